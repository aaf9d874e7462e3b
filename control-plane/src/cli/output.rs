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
            table.add_row(columns.iter().map(|c| item.get(c).map(cell).unwrap_or_default()).collect::<Vec<_>>());
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
                    text.push_str(&format!("\n{k}: {}", cell(v)));
                }
                return text;
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
            table.set_header(vec!["field", "value"]);
            for (k, v) in map {
                table.add_row(vec![k.clone(), cell(v)]);
            }
            table.to_string()
        }
        other => cell(other),
    }
}
