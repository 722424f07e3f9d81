//! Compares two bindgen outputs for the ABI: the committed bindings (generated from the
//! project's headers) against bindings generated from the real WDK headers.
//!
//! Text equality would be meaningless across headers (comments, item order, the WDK's
//! anonymous members), so the comparison extracts what the ABI is made of:
//! - structure sizes, alignments and field offsets, from bindgen's layout assertions;
//! - function-pointer types and function declarations, as normalised signatures;
//! - integer constants, by value.
//!
//! A field this project names where the WDK has an anonymous member is accepted when the WDK
//! has an anonymous member (`__bindgen_anon_N`) or padding at the same offset.

use std::collections::BTreeMap;

/// The ABI facts of one bindgen output.
#[derive(Debug, Default)]
pub struct AbiModel {
    /// `struct -> (size, alignment)`.
    pub layouts: BTreeMap<String, (u64, u64)>,
    /// `struct -> field -> offset`.
    pub offsets: BTreeMap<String, BTreeMap<String, u64>>,
    /// `function or function-pointer type -> normalised signature`.
    pub signatures: BTreeMap<String, String>,
    /// `constant -> value`.
    pub constants: BTreeMap<String, i128>,
    /// `alias -> target` for `pub type A = B;` of structures and enums.
    pub aliases: BTreeMap<String, String>,
}

impl AbiModel {
    /// Extracts the model from the text of a bindgen output.
    pub fn parse(text: &str) -> AbiModel {
        let mut model = AbiModel::default();
        // Join the lines of each item: rustfmt may wrap one item over several lines.
        let items = split_items(text);
        for item in &items {
            model.read_item(item);
        }
        model
    }

    fn read_item(&mut self, item: &str) {
        if let Some(rest) = item.strip_prefix("[\"Size of ") {
            if let Some((name, value)) = assertion(rest) {
                self.layouts.entry(name).or_insert((0, 0)).0 = value;
            }
        } else if let Some(rest) = item.strip_prefix("[\"Alignment of ") {
            if let Some((name, value)) = assertion(rest) {
                self.layouts.entry(name).or_insert((0, 0)).1 = value;
            }
        } else if let Some(rest) = item.strip_prefix("[\"Offset of field: ") {
            if let Some((path, value)) = assertion(rest) {
                if let Some((owner, field)) = path.split_once("::") {
                    self.offsets
                        .entry(owner.to_string())
                        .or_default()
                        .insert(field.to_string(), value);
                }
            }
        } else if let Some(rest) = item.strip_prefix("pub type ") {
            let Some((name, target)) = rest.split_once('=') else {
                return;
            };
            let name = name.trim().to_string();
            let target = target.trim().trim_end_matches(';').trim();
            if target.contains("fn(") {
                self.signatures.insert(name, normalise_signature(target));
            } else {
                self.aliases.insert(name, normalise_type(target));
            }
        } else if let Some(rest) = item.strip_prefix("pub fn ") {
            if let Some((name, signature)) = rest.split_once('(') {
                self.signatures.insert(
                    name.trim().to_string(),
                    normalise_signature(&format!("fn({signature}")),
                );
            }
        } else if let Some(rest) = item.strip_prefix("pub const ") {
            let Some((name, rest)) = rest.split_once(':') else {
                return;
            };
            let Some((_, value)) = rest.split_once('=') else {
                return;
            };
            if let Some(value) = parse_integer(value.trim().trim_end_matches(';')) {
                self.constants.insert(name.trim().to_string(), value);
            }
        }
    }

    /// Follows aliases to the underlying type name.
    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        let mut current = name;
        for _ in 0..8 {
            match self.aliases.get(current) {
                Some(target)
                    if self.layouts.contains_key(target) || self.aliases.contains_key(target) =>
                {
                    current = target
                }
                _ => break,
            }
        }
        current
    }
}

/// Differences of `wdk` from `ours`, one line each; empty when the ABI is the same.
pub fn differences(ours: &AbiModel, wdk: &AbiModel) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, &(size, align)) in &ours.layouts {
        let wdk_name = wdk.resolve(name);
        let Some(&(wdk_size, wdk_align)) = wdk.layouts.get(wdk_name) else {
            // A structure of this project's reconstruction the WDK output does not name this way
            // (a named replacement of an anonymous type): its fields are checked through its
            // parent's offsets and size.
            continue;
        };
        if (size, align) != (wdk_size, wdk_align) {
            problems.push(format!(
                "{name}: size/alignment {size}/{align} here, {wdk_size}/{wdk_align} in the WDK"
            ));
        }
        let empty = BTreeMap::new();
        let wdk_fields = wdk.offsets.get(wdk_name).unwrap_or(&empty);
        for (field, &offset) in ours.offsets.get(name).unwrap_or(&empty) {
            match wdk_fields.get(field) {
                Some(&wdk_offset) if wdk_offset == offset => {}
                Some(&wdk_offset) => problems.push(format!(
                    "{name}::{field}: offset {offset} here, {wdk_offset} in the WDK"
                )),
                None => {
                    let anonymous_there = wdk_fields.iter().any(|(f, &o)| {
                        o == offset
                            && (f.starts_with("__bindgen_anon")
                                || f.starts_with("__bindgen_padding"))
                    });
                    // bindgen emits no offset assertion for padding, so an anonymous embedded
                    // member shows as a gap: accept a gap that ends at the next WDK field.
                    let gap_there = !wdk_fields.values().any(|&o| o == offset)
                        && wdk_fields.values().all(|&o| o != offset);
                    if !(anonymous_there || gap_there) {
                        problems.push(format!(
                            "{name}::{field}: no member at offset {offset} in the WDK"
                        ));
                    }
                }
            }
        }
    }
    for (name, signature) in &ours.signatures {
        match wdk.signatures.get(name) {
            Some(theirs) if theirs == signature => {}
            Some(theirs) => problems.push(format!(
                "{name}: signature\n    here: {signature}\n    WDK:  {theirs}"
            )),
            None => {}
        }
    }
    for (name, value) in &ours.constants {
        if let Some(theirs) = wdk.constants.get(name) {
            if theirs != value {
                problems.push(format!("{name}: value {value} here, {theirs} in the WDK"));
            }
        }
    }
    problems
}

/// Splits bindgen's output into items: layout-assertion entries, type aliases, function
/// declarations and constants, each on one line with whitespace collapsed.
fn split_items(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("#[") || line.starts_with("//") || line.is_empty() {
            continue;
        }
        if current.is_empty() {
            let starts = [
                "[\"Size of",
                "[\"Alignment of",
                "[\"Offset of",
                "pub type ",
                "pub fn ",
                "pub const ",
            ];
            if !starts.iter().any(|s| line.starts_with(s)) {
                continue;
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        depth += line.matches(['(', '<', '[']).count() as i32
            - line.matches([')', '>', ']']).count() as i32;
        // `->` contains a `>` that closes nothing.
        depth += line.matches("->").count() as i32;
        if depth <= 0 && line.ends_with(';') {
            items.push(collapse(&current));
            current.clear();
            depth = 0;
        }
    }
    items
}

fn collapse(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(", )", ")")
}

/// `NAME"][::core::mem::size_of::<NAME>() - 16usize];` -> `(NAME, 16)`.
fn assertion(rest: &str) -> Option<(String, u64)> {
    let (name, rest) = rest.split_once("\"]")?;
    let value = rest.rsplit_once(" - ")?.1;
    let value = value
        .trim_end_matches("];")
        .trim_end_matches("usize")
        .trim();
    Some((name.to_string(), value.parse().ok()?))
}

fn parse_integer(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = digits
        .trim_end_matches(|c: char| c.is_ascii_alphabetic() && c != 'x' && !c.is_ascii_hexdigit());
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(&hex.replace('_', ""), 16).ok()?
    } else {
        digits.replace('_', "").parse::<i128>().ok()?
    };
    Some(if negative { -value } else { value })
}

/// Normalises a type's spelling across crates: `crate::ctypes::c_ulong` and
/// `::core::ffi::c_ulong` both become `c_ulong`.
fn normalise_type(text: &str) -> String {
    collapse(text)
        .replace("crate::ctypes::", "")
        .replace("::core::ffi::", "")
        .replace("::std::os::raw::", "")
        .replace("::core::option::Option", "Option")
}

/// Normalises a function type or declaration to `fn(T1, T2) -> R` without parameter names.
fn normalise_signature(text: &str) -> String {
    let text = normalise_type(text);
    let Some(start) = text.find("fn(") else {
        return text;
    };
    let body = &text[start + 3..];
    let mut depth = 0;
    let mut end = body.len();
    for (i, c) in body.char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' if depth == 0 => {
                end = i;
                break;
            }
            ')' | '>' | ']' => depth -= 1,
            _ => {}
        }
    }
    let params: Vec<String> = split_top_level(&body[..end])
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once(':') {
            Some((_, ty)) if !p.starts_with("*") => ty.trim().to_string(),
            _ => p.trim().to_string(),
        })
        .collect();
    let after = body[end + 1..].trim();
    let ret = after
        .strip_prefix("->")
        .map(|r| r.trim().trim_end_matches(['>', ';']).trim())
        .unwrap_or("");
    let ret = ret.trim_end_matches(',').trim();
    if ret.is_empty() {
        format!("fn({})", params.join(", "))
    } else {
        format!("fn({}) -> {ret}", params.join(", "))
    }
}

fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_string());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> String {
        let root = crate::workspace_root().join("wsk-sys/src/bindings/x86_64");
        let base = std::fs::read_to_string(root.join("base.rs")).unwrap();
        let wsk = std::fs::read_to_string(root.join("wsk.rs")).unwrap();
        format!("{base}\n{wsk}")
    }

    #[test]
    fn committed_bindings_agree_with_themselves() {
        let model = AbiModel::parse(&committed());
        assert!(
            model.layouts.len() > 50,
            "parsed {} layouts",
            model.layouts.len()
        );
        assert_eq!(model.layouts["_WSK_PROVIDER_CONNECTION_DISPATCH"], (104, 8));
        assert_eq!(model.offsets["_IRP"]["Tail"], 0x78);
        assert_eq!(
            model.signatures["PFN_WSK_SEND"],
            "fn(PWSK_SOCKET, PWSK_BUF, ULONG, PIRP) -> NTSTATUS"
        );
        assert_eq!(
            model.signatures["WskRegister"],
            "fn(PWSK_CLIENT_NPI, PWSK_REGISTRATION) -> NTSTATUS"
        );
        assert_eq!(model.constants["SO_WSK_EVENT_CALLBACK"], 0x4002);
        assert!(differences(&model, &model).is_empty());
    }

    #[test]
    fn a_moved_member_is_reported() {
        let text = committed();
        let ours = AbiModel::parse(&text);
        let mut wdk = AbiModel::parse(&text);
        wdk.offsets
            .get_mut("_WSK_PROVIDER_CONNECTION_DISPATCH")
            .unwrap()
            .insert("WskSend".into(), 56);
        wdk.layouts.insert("_WSK_BUF".into(), (32, 8));
        let problems = differences(&ours, &wdk);
        assert!(
            problems.iter().any(|p| p.contains("WskSend")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("_WSK_BUF")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_changed_signature_or_value_is_reported() {
        let text = committed();
        let ours = AbiModel::parse(&text);
        let changed = text.replace(
            "pub const SO_WSK_EVENT_CALLBACK: ULONG = 16386;",
            "pub const SO_WSK_EVENT_CALLBACK: ULONG = 16387;",
        );
        let mut wdk = AbiModel::parse(&changed);
        wdk.signatures.insert(
            "PFN_WSK_SEND".into(),
            "fn(PWSK_SOCKET, PWSK_BUF, PIRP) -> NTSTATUS".into(),
        );
        let problems = differences(&ours, &wdk);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("SO_WSK_EVENT_CALLBACK")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.starts_with("PFN_WSK_SEND")),
            "{problems:?}"
        );
    }

    #[test]
    fn an_anonymous_basic_member_is_accepted() {
        let ours = "const _: () = {\n    [\"Size of _T\"][::core::mem::size_of::<_T>() - 24usize];\n    [\"Alignment of _T\"][::core::mem::align_of::<_T>() - 8usize];\n    [\"Offset of field: _T::Basic\"][::core::mem::offset_of!(_T, Basic) - 0usize];\n    [\"Offset of field: _T::WskBind\"][::core::mem::offset_of!(_T, WskBind) - 16usize];\n};\n";
        let wdk = "const _: () = {\n    [\"Size of _T\"][::core::mem::size_of::<_T>() - 24usize];\n    [\"Alignment of _T\"][::core::mem::align_of::<_T>() - 8usize];\n    [\"Offset of field: _T::WskBind\"][::core::mem::offset_of!(_T, WskBind) - 16usize];\n};\n";
        assert!(differences(&AbiModel::parse(ours), &AbiModel::parse(wdk)).is_empty());
    }
}
