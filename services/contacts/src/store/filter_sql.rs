//! Filter ASTs to SQL conditions. Every value is a bound parameter; only column names and
//! fixed SQL fragments are ever written into the statement.

use sea_orm::DbBackend;
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, SimpleExpr};

use super::entities::contact::Column;
use clm_filter::Mapped;

use crate::domain::filter::{Condition, Filter, Op, TextColumn, TimeColumn};

/// The SQL condition of `filter` for `backend`.
pub(crate) fn condition(filter: &Filter, backend: DbBackend) -> SimpleExpr {
    match filter {
        Mapped::And(a, b) => condition(a, backend).and(condition(b, backend)),
        Mapped::Or(a, b) => condition(a, backend).or(condition(b, backend)),
        Mapped::Not(inner) => condition(inner, backend).not(),
        Mapped::Leaf(leaf) => comparison(leaf, backend),
    }
}

fn comparison(leaf: &Condition, backend: DbBackend) -> SimpleExpr {
    match leaf {
        Condition::Text(column, op, value) => compare(Expr::col(text_column(*column)), *op, value),
        Condition::Time(column, op, micros) => {
            let column = Expr::col(match column {
                TimeColumn::CreatedAt => Column::CreatedAt,
                TimeColumn::UpdatedAt => Column::UpdatedAt,
            });
            compare_value(column, *op, *micros)
        }
        Condition::Attribute(key, op, value) => {
            let extracted = match backend {
                DbBackend::Postgres => Expr::cust_with_values(
                    "json_extract_path_text(\"attributes\", $1)",
                    [key.clone()],
                ),
                _ => Expr::cust_with_values(
                    "json_extract(\"attributes\", ?)",
                    [format!("$.\"{key}\"")],
                ),
            };
            compare(extracted, *op, value)
        }
    }
}

fn compare(left: SimpleExpr, op: Op, value: &str) -> SimpleExpr {
    if op == Op::Contains {
        let pattern = format!("%{}%", escape_like(&value.to_lowercase()));
        return Expr::expr(Func::lower(left)).like(LikeExpr::new(pattern).escape('\\'));
    }
    compare_value(left, op, value.to_owned())
}

fn compare_value<V: Into<sea_orm::Value>>(left: SimpleExpr, op: Op, value: V) -> SimpleExpr {
    match op {
        Op::Eq => left.eq(value.into()),
        Op::Ne => left.ne(value.into()),
        Op::Lt => left.lt(value.into()),
        Op::Le => left.lte(value.into()),
        Op::Gt => left.gt(value.into()),
        Op::Ge => left.gte(value.into()),
        // `~` is only meaningful on text, which `compare` handles; the parser refuses it
        // on instants, so this arm matches nothing rather than something wrong.
        Op::Contains => Expr::value(false),
    }
}

/// Escapes LIKE's wildcards so a value matches literally.
fn escape_like(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn text_column(column: TextColumn) -> Column {
    match column {
        TextColumn::Id => Column::Id,
        TextColumn::Email => Column::Email,
        TextColumn::FirstName => Column::FirstName,
        TextColumn::LastName => Column::LastName,
        TextColumn::Phone => Column::Phone,
        TextColumn::Company => Column::Company,
        TextColumn::JobTitle => Column::JobTitle,
        TextColumn::Country => Column::Country,
        TextColumn::City => Column::City,
        TextColumn::Source => Column::Source,
        TextColumn::Campaign => Column::Campaign,
    }
}
