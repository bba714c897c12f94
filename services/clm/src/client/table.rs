//! Plain tables for the terminal.

use comfy_table::{ContentArrangement, Table, presets::UTF8_BORDERS_ONLY};

/// A table with `header`, sized to the terminal.
pub(crate) fn new(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}
