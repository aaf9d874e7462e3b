//! `--output table|json`: JSON prints the API's answer unchanged (for jq); a table shows
//! an array of objects one row each, an object one field a row.

use std::io::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::Value;

use super::client::{CliError, Reply};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Prints an answer the API sent as JSON.
pub fn show(output: Output, reply: &Reply) -> Result<(), CliError> {
    match output {
        Output::Json => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&reply.body);
            let _ = out.write_all(b"\n");
            Ok(())
        }
        Output::Table => {
            let value = reply.json()?;
            println!("{}", render(&value));
            Ok(())
        }
    }
}

/// An answer without a body (204): a line in table mode, `{}` in JSON mode.
pub fn done(output: Output, what: &str) {
    match output {
        Output::Json => println!("{{}}"),
        Output::Table => println!("{what}"),
    }
}

/// A field's cell: times (`at` and every `...At` field, ms since the epoch) as UTC dates
/// for people; JSON output keeps the numbers.
fn field_cell(key: &str, v: &Value) -> String {
    match v.as_i64() {
        Some(ms) if (key == "at" || key.ends_with("At")) && ms >= 1_000_000_000_000 => crate::tokens::keys::iso_utc(ms),
        _ => cell(v),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows(items: &[Value]) -> Table {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    if columns.is_empty() {
        table.set_header(vec!["value"]);
        for item in items {
            table.add_row(vec![cell(item)]);
        }
    } else {
        table.set_header(columns.clone());
        for item in items {
            table.add_row(columns.iter().map(|c| item.get(c).map(|v| field_cell(c, v)).unwrap_or_default()).collect::<Vec<_>>());
        }
    }
    table
}

/// The table text for an answer: an array as rows; an object whose one array field holds
/// the items (`{"vouchers":[...],"unused":..}`) as rows plus its other fields below; any
/// other object as field/value rows.
pub fn render(value: &Value) -> String {
    match value {
        Value::Array(items) if items.is_empty() => "(none)".to_owned(),
        Value::Array(items) => rows(items).to_string(),
        Value::Object(map) => {
            let arrays: Vec<_> = map.iter().filter(|(_, v)| v.as_array().is_some_and(|a| a.iter().all(Value::is_object))).collect();
            if let [(name, Value::Array(items))] = arrays.as_slice() {
                let mut text = if items.is_empty() { "(none)".to_owned() } else { rows(items).to_string() };
                for (k, v) in map.iter().filter(|(k, _)| k != name) {
                    text.push_str(&format!("\n{k}: {}", field_cell(k, v)));
                }
                return text;
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
            table.set_header(vec!["field", "value"]);
            for (k, v) in map {
                table.add_row(vec![k.clone(), field_cell(k, v)]);
            }
            table.to_string()
        }
        other => cell(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_as_utc_dates_and_other_numbers_stay() {
        let text = render(
            &serde_json::json!([{"at": 1_796_395_818_411_i64, "expiresAt": 1_796_395_818_000_i64, "count": 1_796_395_818_411_i64, "fl": -1}]),
        );
        assert!(text.contains("2026-12-04T") && text.contains("Z"), "{text}");
        assert!(text.contains("1796395818411"), "a non-time field keeps its number: {text}");
        assert!(!text.contains("1796395818000"), "{text}");
    }
}
