//! Properties of the parser over generated input: it never panics, rejects what is too long
//! or too deep with a position inside the text, and reads back what it is given.

use proptest::prelude::*;

use crate::{Expr, MAX_DEPTH, MAX_LENGTH, Op, parse};

/// An expression without positions, to compare what was written with what was read.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    And(Box<Shape>, Box<Shape>),
    Or(Box<Shape>, Box<Shape>),
    Not(Box<Shape>),
    Compare(String, Op, String),
}

fn shape(expr: &Expr) -> Shape {
    match expr {
        Expr::And(a, b) => Shape::And(Box::new(shape(a)), Box::new(shape(b))),
        Expr::Or(a, b) => Shape::Or(Box::new(shape(a)), Box::new(shape(b))),
        Expr::Not(a) => Shape::Not(Box::new(shape(a))),
        Expr::Compare(c) => Shape::Compare(c.field.clone(), c.op, c.value.clone()),
    }
}

/// Writes `shape` back as filter text, every group in parentheses, values escaped.
fn render(shape: &Shape) -> String {
    match shape {
        Shape::And(a, b) => format!("({} AND {})", render(a), render(b)),
        Shape::Or(a, b) => format!("({} or {})", render(a), render(b)),
        Shape::Not(a) => format!("NOT {}", render(a)),
        Shape::Compare(field, op, value) => {
            let op = match op {
                Op::Eq => "=",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Contains => "~",
            };
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{field} {op} \"{escaped}\"")
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Eq),
        Just(Op::Ne),
        Just(Op::Lt),
        Just(Op::Le),
        Just(Op::Gt),
        Just(Op::Ge),
        Just(Op::Contains),
    ]
}

fn field() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_.-]{0,20}".prop_filter("keywords are not fields", |f| {
        !["and", "or", "not"].contains(&f.as_str())
    })
}

fn comparison() -> impl Strategy<Value = Shape> {
    // Any text as a value, quotes, backslashes and non-ASCII included.
    (field(), op(), any::<String>()).prop_map(|(f, o, v)| Shape::Compare(f, o, v))
}

fn expression() -> impl Strategy<Value = Shape> {
    comparison().prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Shape::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Shape::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| Shape::Not(Box::new(a))),
        ]
    })
}

proptest! {
    #[test]
    fn what_is_written_is_read_back(expected in expression()) {
        let text = render(&expected);
        prop_assume!(text.len() <= MAX_LENGTH);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e:?}")))?;
        prop_assert_eq!(parsed.as_ref().map(shape), Some(expected));
    }

    #[test]
    fn any_text_parses_or_fails_at_a_position_inside_it(text in any::<String>()) {
        if let Err(error) = parse(&text) {
            prop_assert!(error.position >= 1);
            prop_assert!(error.position <= text.chars().count().max(MAX_LENGTH) + 1);
            prop_assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn filter_like_text_never_panics(text in r#"[a-z.()" =!<>~\\]{0,200}"#) {
        let _ = parse(&text);
        let _ = parse(&format!("{text} AND x = \"1\""));
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused(depth in (MAX_DEPTH + 1)..400usize, parens in any::<bool>()) {
        let text = if parens {
            format!("{}a = \"1\"{}", "(".repeat(depth), ")".repeat(depth))
        } else {
            format!("{}a = \"1\"", "NOT ".repeat(depth))
        };
        prop_assume!(text.len() <= MAX_LENGTH);
        let error = parse(&text).unwrap_err();
        prop_assert!(error.message.contains("deep") || error.message.contains("nest"), "{}", error.message);
    }
}

#[test]
fn text_longer_than_the_limit_is_refused_before_parsing() {
    let text = format!("a = \"{}\"", "x".repeat(MAX_LENGTH));
    let error = parse(&text).unwrap_err();
    assert_eq!(error.position, MAX_LENGTH + 1);
}
