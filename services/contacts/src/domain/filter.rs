//! The ListContacts filter language: comparisons joined by AND, OR, NOT and parentheses.
//!
//! ```text
//! expr       = or
//! or         = and ("OR" and)*
//! and        = unary ("AND" unary)*
//! unary      = "NOT" unary | "(" expr ")" | comparison
//! comparison = FIELD OP STRING         OP = "=" | "!=" | "<" | "<=" | ">" | ">=" | "~"
//! ```
//! Values are parsed here and bound as parameters by the store; they never become SQL.

use super::contact::attribute_key_problem;
use super::time::{self, Micros};

/// Longest accepted filter, in bytes.
pub const MAX_LENGTH: usize = 2048;
/// Deepest accepted nesting of NOT and parentheses.
pub const MAX_DEPTH: usize = 16;

/// A column of the contact a filter may compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextColumn {
    /// id
    Id,
    /// email
    Email,
    /// first_name
    FirstName,
    /// last_name
    LastName,
    /// phone
    Phone,
    /// company
    Company,
    /// job_title
    JobTitle,
    /// country
    Country,
    /// city
    City,
    /// source
    Source,
    /// campaign
    Campaign,
}

/// An instant column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeColumn {
    /// created_at
    CreatedAt,
    /// updated_at
    UpdatedAt,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// =
    Eq,
    /// !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
    /// ~ (contains, case-insensitive)
    Contains,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// Does not hold.
    Not(Box<Filter>),
    /// A text column compared with a string.
    Text(TextColumn, Op, String),
    /// An instant column compared with an instant.
    Time(TimeColumn, Op, Micros),
    /// A custom attribute compared with a string (a missing attribute never matches).
    Attribute(String, Op, String),
}

/// A filter that does not parse, with the 1-based character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based position in characters.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
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

/// Parses `text`; an empty or blank filter is `None` (everything matches).
pub fn parse(text: &str) -> Result<Option<Filter>, FilterError> {
    if text.len() > MAX_LENGTH {
        return Err(FilterError {
            position: MAX_LENGTH + 1,
            message: format!("the filter is longer than {MAX_LENGTH} bytes"),
        });
    }
    let tokens = tokenize(text)?;
    if tokens.len() == 1 {
        return Ok(None);
    }
    let mut parser = Parser { tokens, at: 0 };
    let filter = parser.or(0)?;
    match parser.peek() {
        Token::End => Ok(Some(filter)),
        other => Err(parser.error(format!("unexpected {}", describe(other)))),
    }
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

    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while *self.peek() == Token::Or {
            self.next();
            left = Filter::Or(Box::new(left), Box::new(self.and(depth)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while *self.peek() == Token::And {
            self.next();
            left = Filter::And(Box::new(left), Box::new(self.unary(depth)?));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting is deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Token::Not => {
                self.next();
                Ok(Filter::Not(Box::new(self.unary(depth + 1)?)))
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

    fn comparison(&mut self) -> Result<Filter, FilterError> {
        let (field, field_at) = match self.next() {
            (Token::Ident(name), at) => (name, at),
            (other, position) => {
                return Err(FilterError {
                    position,
                    message: format!("expected a field name but found {}", describe(&other)),
                });
            }
        };
        let op = match self.next() {
            (Token::Op(op), _) => op,
            (other, position) => {
                return Err(FilterError {
                    position,
                    message: format!(
                        "expected an operator after {field:?} but found {}",
                        describe(&other)
                    ),
                });
            }
        };
        let (value, value_at) = match self.next() {
            (Token::Str(value), at) => (value, at),
            (other, position) => {
                return Err(FilterError {
                    position,
                    message: format!(
                        "expected a double-quoted value but found {}",
                        describe(&other)
                    ),
                });
            }
        };
        let at = |position: usize, message: String| FilterError { position, message };
        if let Some(column) = text_column(&field) {
            return Ok(Filter::Text(column, op, value));
        }
        let time_column = match field.as_str() {
            "created_at" => Some(TimeColumn::CreatedAt),
            "updated_at" => Some(TimeColumn::UpdatedAt),
            _ => None,
        };
        if let Some(column) = time_column {
            if op == Op::Contains {
                return Err(at(field_at, format!("{field} cannot be compared with ~")));
            }
            let instant = time::parse(&value).ok_or_else(|| {
                at(
                    value_at,
                    format!("{value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"),
                )
            })?;
            return Ok(Filter::Time(column, op, instant));
        }
        if let Some(key) = field.strip_prefix("attributes.") {
            if let Some(problem) = attribute_key_problem(key) {
                return Err(at(
                    field_at + "attributes.".len(),
                    format!("attribute {problem}"),
                ));
            }
            return Ok(Filter::Attribute(key.to_owned(), op, value));
        }
        Err(at(field_at, format!("unknown field {field:?}")))
    }
}

fn text_column(name: &str) -> Option<TextColumn> {
    Some(match name {
        "id" => TextColumn::Id,
        "email" => TextColumn::Email,
        "first_name" => TextColumn::FirstName,
        "last_name" => TextColumn::LastName,
        "phone" => TextColumn::Phone,
        "company" => TextColumn::Company,
        "job_title" => TextColumn::JobTitle,
        "country" => TextColumn::Country,
        "city" => TextColumn::City,
        "source" => TextColumn::Source,
        "campaign" => TextColumn::Campaign,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: TextColumn, op: Op, v: &str) -> Box<Filter> {
        Box::new(Filter::Text(c, op, v.into()))
    }

    #[test]
    fn parses_the_documented_example() {
        let f = parse(r#"country = "DE" AND job_title ~ "cto" AND created_at >= "2026-01-01""#)
            .unwrap()
            .unwrap();
        let expected = Filter::And(
            Box::new(Filter::And(
                text(TextColumn::Country, Op::Eq, "DE"),
                text(TextColumn::JobTitle, Op::Contains, "cto"),
            )),
            Box::new(Filter::Time(
                TimeColumn::CreatedAt,
                Op::Ge,
                time::parse("2026-01-01").unwrap(),
            )),
        );
        assert_eq!(f, expected);
    }

    #[test]
    fn or_binds_looser_than_and_and_not_nests() {
        let f = parse(r#"NOT (city = "a" OR city = "b") and source != "x""#)
            .unwrap()
            .unwrap();
        let Filter::And(left, _) = f else {
            panic!("{f:?}")
        };
        assert!(matches!(*left, Filter::Not(_)));
    }

    #[test]
    fn errors_name_the_position() {
        assert_eq!(parse(r#"country = "DE" AND"#).unwrap_err().position, 19);
        assert_eq!(parse(r#"country == "DE""#).unwrap_err().position, 10);
        assert_eq!(parse(r#"colour = "red""#).unwrap_err().position, 1);
        assert_eq!(parse(r#"city = "Berl"#).unwrap_err().position, 8);
        assert_eq!(
            parse(r#"created_at > "yesterday""#).unwrap_err().position,
            14
        );
        assert_eq!(parse(r#"(city = "a""#).unwrap_err().position, 12);
    }

    #[test]
    fn quotes_inside_values_stay_values() {
        let f = parse(r#"email = "x' OR '1'='1""#).unwrap().unwrap();
        assert_eq!(f, *text(TextColumn::Email, Op::Eq, "x' OR '1'='1"));
        let f = parse(r#"city = "say \"hi\" \\""#).unwrap().unwrap();
        assert_eq!(f, *text(TextColumn::City, Op::Eq, r#"say "hi" \"#));
    }

    #[test]
    fn limits_length_and_depth() {
        assert!(parse(&"x".repeat(MAX_LENGTH + 1)).is_err());
        let deep = format!(
            "{}city = \"a\"{}",
            "(".repeat(MAX_DEPTH + 2),
            ")".repeat(MAX_DEPTH + 2)
        );
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        assert!(parse("   ").unwrap().is_none());
    }

    #[test]
    fn attributes_are_addressed_by_key() {
        let f = parse(r#"attributes.plan = "pro""#).unwrap().unwrap();
        assert_eq!(f, Filter::Attribute("plan".into(), Op::Eq, "pro".into()));
        assert!(parse(r#"attributes.Plan = "pro""#).is_err());
    }
}
