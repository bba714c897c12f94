//! clm-filter: the expression language clm uses for contact filters, rule conditions and
//! segments: comparisons joined by AND, OR, NOT and parentheses.
//!
//! ```text
//! expr       = or
//! or         = and ("OR" and)*
//! and        = unary ("AND" unary)*
//! unary      = "NOT" unary | "(" expr ")" | comparison
//! comparison = FIELD OP STRING         OP = "=" | "!=" | "<" | "<=" | ">" | ">=" | "~"
//! ```
//! The parser knows no field names: each user maps (and rejects) fields itself, with the
//! positions kept in the tree. Values stay values: a user binds them as parameters or
//! compares them in memory, never splices them into a query.
#![forbid(unsafe_code)]

mod eval;
mod parse;
#[cfg(test)]
mod properties;

pub use parse::parse;

/// Longest accepted expression, in bytes.
pub const MAX_LENGTH: usize = 2048;
/// Deepest accepted nesting of NOT and parentheses.
pub const MAX_DEPTH: usize = 16;

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

/// One `FIELD OP "VALUE"`, with 1-based character positions for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The field as written.
    pub field: String,
    /// Where the field starts.
    pub field_at: usize,
    /// The operator.
    pub op: Op,
    /// The value, unescaped.
    pub value: String,
    /// Where the value starts.
    pub value_at: usize,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Does not hold.
    Not(Box<Expr>),
    /// A comparison.
    Compare(Comparison),
}

/// An expression that does not parse (or names something its user rejects), with the
/// 1-based character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 1-based position in characters.
    pub position: usize,
    /// What is wrong.
    pub message: String,
}

impl FilterError {
    /// An error at `position`.
    pub fn at(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for FilterError {}

impl Expr {
    /// Rebuilds the tree with each comparison turned into a `T` by `leaf`, keeping the
    /// shape; the first error wins.
    pub fn try_map<T, F>(&self, leaf: &F) -> Result<Mapped<T>, FilterError>
    where
        F: Fn(&Comparison) -> Result<T, FilterError>,
    {
        Ok(match self {
            Self::And(a, b) => Mapped::And(Box::new(a.try_map(leaf)?), Box::new(b.try_map(leaf)?)),
            Self::Or(a, b) => Mapped::Or(Box::new(a.try_map(leaf)?), Box::new(b.try_map(leaf)?)),
            Self::Not(inner) => Mapped::Not(Box::new(inner.try_map(leaf)?)),
            Self::Compare(c) => Mapped::Leaf(leaf(c)?),
        })
    }
}

/// An expression whose comparisons a user has typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped<T> {
    /// Both hold.
    And(Box<Mapped<T>>, Box<Mapped<T>>),
    /// Either holds.
    Or(Box<Mapped<T>>, Box<Mapped<T>>),
    /// Does not hold.
    Not(Box<Mapped<T>>),
    /// A typed comparison.
    Leaf(T),
}

impl<T> Mapped<T> {
    /// Folds the tree: `leaf` evaluates comparisons, the connectives combine them.
    pub fn eval(&self, leaf: &impl Fn(&T) -> bool) -> bool {
        match self {
            Self::And(a, b) => a.eval(leaf) && b.eval(leaf),
            Self::Or(a, b) => a.eval(leaf) || b.eval(leaf),
            Self::Not(inner) => !inner.eval(leaf),
            Self::Leaf(t) => leaf(t),
        }
    }

    /// Every comparison of the tree, left to right.
    pub fn leaves(&self) -> Vec<&T> {
        match self {
            Self::And(a, b) | Self::Or(a, b) => {
                let mut out = a.leaves();
                out.extend(b.leaves());
                out
            }
            Self::Not(inner) => inner.leaves(),
            Self::Leaf(t) => vec![t],
        }
    }
}

pub use eval::compare_text;
