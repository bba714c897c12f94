//! Tokenizer and recursive-descent parser.

use crate::{Comparison, Expr, FilterError, MAX_DEPTH, MAX_LENGTH, Op};

/// Parses `text`; an empty or blank expression is `None` (everything matches).
pub fn parse(text: &str) -> Result<Option<Expr>, FilterError> {
    if text.len() > MAX_LENGTH {
        return Err(FilterError::at(
            MAX_LENGTH + 1,
            format!("the expression is longer than {MAX_LENGTH} bytes"),
        ));
    }
    let tokens = tokenize(text)?;
    if tokens.len() == 1 {
        return Ok(None);
    }
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or(0)?;
    match parser.peek() {
        Token::End => Ok(Some(expr)),
        other => Err(parser.error(format!("unexpected {}", describe(other)))),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Op(Op),
    LParen,
    RParen,
    And,
    Or,
    Not,
    End,
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let position = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let (token, width) = match c {
            '(' => (Token::LParen, 1),
            ')' => (Token::RParen, 1),
            '~' => (Token::Op(Op::Contains), 1),
            '=' => (Token::Op(Op::Eq), 1),
            '!' if two == "!=" => (Token::Op(Op::Ne), 2),
            '<' if two == "<=" => (Token::Op(Op::Le), 2),
            '<' => (Token::Op(Op::Lt), 1),
            '>' if two == ">=" => (Token::Op(Op::Ge), 2),
            '>' => (Token::Op(Op::Gt), 1),
            '"' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(FilterError {
                                position,
                                message: "unterminated string".into(),
                            });
                        }
                        Some('"') => break,
                        Some('\\') => match chars.get(j + 1) {
                            Some(e @ ('"' | '\\')) => {
                                value.push(*e);
                                j += 1;
                            }
                            _ => {
                                return Err(FilterError {
                                    position: j + 1,
                                    message: "only \\\" and \\\\ may be escaped".into(),
                                });
                            }
                        },
                        Some(other) => value.push(*other),
                    }
                    j += 1;
                }
                (Token::Str(value), j + 1 - i)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let word: String = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    .collect();
                let width = word.chars().count();
                let token = match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Ident(word),
                };
                (token, width)
            }
            other => {
                return Err(FilterError {
                    position,
                    message: format!("unexpected character {other:?}"),
                });
            }
        };
        tokens.push((token, position));
        i += width;
    }
    tokens.push((Token::End, chars.len() + 1));
    Ok(tokens)
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("name {name:?}"),
        Token::Str(_) => "string".into(),
        Token::Op(_) => "operator".into(),
        Token::LParen => "'('".into(),
        Token::RParen => "')'".into(),
        Token::And => "AND".into(),
        Token::Or => "OR".into(),
        Token::Not => "NOT".into(),
        Token::End => "end of filter".into(),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].0
    }

    fn next(&mut self) -> (Token, usize) {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn error(&self, message: String) -> FilterError {
        FilterError {
            position: self.tokens[self.at].1,
            message,
        }
    }

    fn or(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.and(depth)?;
        while *self.peek() == Token::Or {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut left = self.unary(depth)?;
        while *self.peek() == Token::And {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting is deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Token::Not => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Token::LParen => {
                self.next();
                let inner = self.or(depth + 1)?;
                match self.next() {
                    (Token::RParen, _) => Ok(inner),
                    (other, position) => Err(FilterError {
                        position,
                        message: format!("expected ')' but found {}", describe(&other)),
                    }),
                }
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let (field, field_at) = match self.next() {
            (Token::Ident(name), at) => (name, at),
            (other, position) => {
                return Err(FilterError::at(
                    position,
                    format!("expected a field name but found {}", describe(&other)),
                ));
            }
        };
        let op = match self.next() {
            (Token::Op(op), _) => op,
            (other, position) => {
                return Err(FilterError::at(
                    position,
                    format!(
                        "expected an operator after {field:?} but found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        let (value, value_at) = match self.next() {
            (Token::Str(value), at) => (value, at),
            (other, position) => {
                return Err(FilterError::at(
                    position,
                    format!(
                        "expected a double-quoted value but found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        Ok(Expr::Compare(Comparison {
            field,
            field_at,
            op,
            value,
            value_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(field: &str, op: Op, value: &str) -> Option<(String, Op, String)> {
        Some((field.into(), op, value.into()))
    }

    fn first(text: &str) -> Option<(String, Op, String)> {
        match parse(text).unwrap()? {
            Expr::Compare(c) => Some((c.field, c.op, c.value)),
            Expr::And(a, _) | Expr::Or(a, _) => match *a {
                Expr::Compare(c) => Some((c.field, c.op, c.value)),
                _ => None,
            },
            Expr::Not(_) => None,
        }
    }

    #[test]
    fn parses_comparisons_and_connectives() {
        assert_eq!(
            first(r#"country = "DE" AND x ~ "y""#),
            leaf("country", Op::Eq, "DE")
        );
        assert_eq!(
            first(r#"attributes.plan != "pro""#),
            leaf("attributes.plan", Op::Ne, "pro")
        );
        let e = parse(r#"NOT (a = "1" OR b = "2") and c >= "3""#)
            .unwrap()
            .unwrap();
        let Expr::And(left, _) = e else { panic!() };
        assert!(matches!(*left, Expr::Not(_)));
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(parse(r#"country = "DE" AND"#).unwrap_err().position, 19);
        assert_eq!(parse(r#"country == "DE""#).unwrap_err().position, 10);
        assert_eq!(parse(r#"city = "Berl"#).unwrap_err().position, 8);
        assert_eq!(parse(r#"(city = "a""#).unwrap_err().position, 12);
        assert_eq!(parse(r#"a = "1" ; b"#).unwrap_err().position, 9);
    }

    #[test]
    fn quotes_and_escapes_stay_inside_values() {
        assert_eq!(
            first(r#"email = "x' OR '1'='1""#),
            leaf("email", Op::Eq, "x' OR '1'='1")
        );
        assert_eq!(
            first(r#"city = "say \"hi\" \\""#),
            leaf("city", Op::Eq, r#"say "hi" \"#)
        );
    }

    #[test]
    fn limits_length_and_depth() {
        assert!(parse(&"x".repeat(MAX_LENGTH + 1)).is_err());
        let deep = format!(
            "{}a = \"1\"{}",
            "(".repeat(MAX_DEPTH + 2),
            ")".repeat(MAX_DEPTH + 2)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        assert!(parse("   ").unwrap().is_none());
    }
}
