//! The one text form of a contract file: pretty-printed JSON, two-space indents, object keys in
//! a fixed order, a trailing newline. The same document always gives the same bytes, whatever
//! features of `serde_json` other crates of the build turn on (`preserve_order` would keep
//! insertion order), so a contract file changes only when the contract does.

use serde_json::Value;

/// Keys of the document's root, in reading order: what it is before what it contains.
const ROOT_ORDER: &[&str] = &["$schema", "title", "description", "$ref", "anyOf", "$defs"];

/// The canonical text of `document`: root keys in [`ROOT_ORDER`], then alphabetically; every
/// nested object's keys alphabetically.
pub fn to_text(document: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, document, 0, true);
    out.push('\n');
    out
}

fn write_value(out: &mut String, value: &Value, indent: usize, root: bool) {
    match value {
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|key| {
                let rank = if root {
                    ROOT_ORDER.iter().position(|k| k == key)
                } else {
                    None
                };
                (rank.unwrap_or(ROOT_ORDER.len()), key.as_str())
            });
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(out, indent + 1);
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push_str(": ");
                write_value(out, &map[key.as_str()], indent + 1, false);
            }
            out.push('\n');
            push_indent(out, indent);
            out.push('}');
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                push_indent(out, indent + 1);
                write_value(out, item, indent + 1, false);
            }
            out.push('\n');
            push_indent(out, indent);
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn push_indent(out: &mut String, level: usize) {
    out.push_str(&"  ".repeat(level));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn root_keys_read_in_order_and_nested_keys_sort() {
        let document = json!({
            "$defs": {"B": {"type": "string", "enum": ["b", "a"]}, "A": {}},
            "title": "x.y.v1",
            "$schema": "s",
            "zeta": [],
        });
        let expected = r#"{
  "$schema": "s",
  "title": "x.y.v1",
  "$defs": {
    "A": {},
    "B": {
      "enum": [
        "b",
        "a"
      ],
      "type": "string"
    }
  },
  "zeta": []
}
"#;
        assert_eq!(to_text(&document), expected);
    }

    #[test]
    fn same_as_serde_json_pretty_apart_from_key_order() {
        let value = json!({"a": [1, 2.5, null, true, "q\"\n"], "b": {"c": {}}});
        let ours = to_text(&value);
        let theirs = serde_json::to_string_pretty(&value).expect("serializable") + "\n";
        assert_eq!(ours, theirs);
    }
}
