//! XEP-0004 data forms ↔ JSON (docs/contract.md §13), in mod_rest's shape:
//! `{type, title?, instructions?, fields: [{var, type?, label?, desc?,
//! required?, value?, options?}], reported?, items?}`. A form read from a
//! stanza also gives `data`, the simple map `var → value` a bot reads.
//! Pure functions; the key path of every refusal is named by the caller's
//! `path` (`form`, `command.form`).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::json;
use crate::xml::Element;

pub const XMLNS: &str = "jabber:x:data";

/// XEP-0004 §3.3: the form types.
pub const FORM_TYPES: [&str; 4] = ["form", "submit", "cancel", "result"];

/// XEP-0004 §3.3: the field types.
pub const FIELD_TYPES: [&str; 10] = [
    "boolean",
    "fixed",
    "hidden",
    "jid-multi",
    "jid-single",
    "list-multi",
    "list-single",
    "text-multi",
    "text-private",
    "text-single",
];

/// A form's JSON that cannot be made XML: the message names the key path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("'{path}' {why}")]
pub struct FormError {
    pub path: String,
    pub why: String,
}

fn refuse(path: &str, why: impl Into<String>) -> FormError {
    FormError {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// The type of each field of a form (var → type), as sent: what `data`
/// falls back on when a submitted field does not say its type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTypes(Vec<(String, String)>);

impl FieldTypes {
    /// The typed fields of `form`'s XML.
    pub fn of(x: &Element) -> FieldTypes {
        FieldTypes(
            fields(x)
                .filter_map(|f| Some((f.attr("var")?.to_owned(), f.attr("type")?.to_owned())))
                .collect(),
        )
    }

    fn get(&self, var: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, t)| t.as_str())
    }
}

/// The first data form among `parent`'s children, if any.
pub fn find(parent: &Element) -> Option<&Element> {
    parent
        .elements()
        .find(|c| c.name == "x" && c.attr("xmlns") == Some(XMLNS))
}

/// A child in the form's namespace (written with or without `xmlns`).
fn is(child: &Element, name: &str) -> bool {
    child.name == name && child.attr("xmlns").is_none_or(|ns| ns == XMLNS)
}

fn children<'a>(parent: &'a Element, name: &'a str) -> impl Iterator<Item = &'a Element> {
    parent.elements().filter(move |c| is(c, name))
}

fn fields(parent: &Element) -> impl Iterator<Item = &Element> {
    children(parent, "field")
}

fn values(field: &Element) -> Vec<String> {
    children(field, "value").map(Element::text).collect()
}

fn is_multi(field_type: Option<&str>) -> bool {
    field_type.is_some_and(|t| t.ends_with("-multi"))
}

/// A form as JSON: values as written (a boolean's `"1"` stays `"1"`), an
/// untyped field without `type`, several `<instructions/>` joined by a
/// newline.
pub fn to_json(x: &Element) -> Value {
    let mut form = Map::new();
    if let Some(t) = x.attr("type") {
        form.insert("type".into(), t.into());
    }
    if let Some(title) = children(x, "title").next() {
        form.insert("title".into(), title.text().into());
    }
    let instructions: Vec<String> = children(x, "instructions").map(Element::text).collect();
    if !instructions.is_empty() {
        form.insert("instructions".into(), instructions.join("\n").into());
    }
    form.insert("fields".into(), fields_json(x));
    if let Some(reported) = children(x, "reported").next() {
        form.insert("reported".into(), fields_json(reported));
        let items = children(x, "item").map(fields_json).collect();
        form.insert("items".into(), Value::Array(items));
    }
    Value::Object(form)
}

fn fields_json(parent: &Element) -> Value {
    Value::Array(fields(parent).map(field_json).collect())
}

fn field_json(field: &Element) -> Value {
    let mut json = Map::new();
    for key in ["var", "type", "label"] {
        if let Some(value) = field.attr(key) {
            json.insert(key.into(), value.into());
        }
    }
    if let Some(desc) = children(field, "desc").next() {
        json.insert("desc".into(), desc.text().into());
    }
    if children(field, "required").next().is_some() {
        json.insert("required".into(), true.into());
    }
    let mut values = values(field);
    if values.len() > 1 || (is_multi(field.attr("type")) && !values.is_empty()) {
        json.insert("value".into(), values.into());
    } else if let Some(value) = values.pop() {
        json.insert("value".into(), value.into());
    }
    let options: Vec<Value> = children(field, "option")
        .map(|option| {
            let mut json = Map::new();
            if let Some(label) = option.attr("label") {
                json.insert("label".into(), label.into());
            }
            let value = children(option, "value").next().map(Element::text);
            json.insert("value".into(), value.unwrap_or_default().into());
            Value::Object(json)
        })
        .collect();
    if !options.is_empty() {
        json.insert("options".into(), options.into());
    }
    Value::Object(json)
}

/// A submitted form as the map `var → value`: a string; an array for a
/// `*-multi` field or several values; `true`/`false` for a `boolean`
/// (XEP-0004 writes `1`/`true`/`0`/`false`; none is false). A field's
/// type is the one it gives, else the one in `sent` (the form it answers).
/// A field with no value is `""` (`[]` when multi).
pub fn data(x: &Element, sent: &FieldTypes) -> Map<String, Value> {
    let mut data = Map::new();
    for field in fields(x) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let field_type = field.attr("type").or_else(|| sent.get(var));
        let mut values = values(field);
        let value = if field_type == Some("boolean") {
            Value::Bool(values.first().is_some_and(|v| v == "1" || v == "true"))
        } else if is_multi(field_type) || values.len() > 1 {
            values.into()
        } else {
            values.pop().unwrap_or_default().into()
        };
        data.insert(var.to_owned(), value);
    }
    data
}

/// A form's JSON (at key path `path`) as the `<x xmlns='jabber:x:data'/>`
/// it describes, children in XEP-0004's order. `type` defaults to `form`;
/// every field needs a `var` but a `fixed` one; every option a `value`.
pub fn from_json(value: &Value, path: &str) -> Result<Element, FormError> {
    let form = value
        .as_object()
        .ok_or_else(|| refuse(path, "must be an object"))?;
    let at = |key: &str| format!("{path}.{key}");
    let form_type = match form.get("type").filter(|v| !v.is_null()) {
        None => "form",
        Some(t) => one_of(t, &at("type"), &FORM_TYPES)?,
    };
    let mut x = Element::new("x")
        .with_attr("xmlns", XMLNS)
        .with_attr("type", form_type);
    if let Some(text) = string(form, "instructions", path)? {
        for line in text.split('\n') {
            x = x.with_child(Element::new("instructions").with_text(line));
        }
    }
    if let Some(title) = string(form, "title", path)? {
        x = x.with_child(Element::new("title").with_text(title));
    }
    x.children
        .extend(field_list(form.get("fields"), &at("fields"))?);
    if let Some(reported) = form.get("reported").filter(|v| !v.is_null()) {
        let fields = field_list(Some(reported), &at("reported"))?;
        x = x.with_child(element_with(Element::new("reported"), fields));
        let items_path = at("items");
        let items = match form.get("items").filter(|v| !v.is_null()) {
            None => &Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(refuse(&items_path, "must be an array of arrays of fields")),
        };
        for (i, item) in items.iter().enumerate() {
            let fields = field_list(Some(item), &format!("{items_path}[{i}]"))?;
            x = x.with_child(element_with(Element::new("item"), fields));
        }
    }
    Ok(x)
}

fn element_with(element: Element, children: Vec<crate::xml::Node>) -> Element {
    Element {
        children,
        ..element
    }
}

fn field_list(value: Option<&Value>, path: &str) -> Result<Vec<crate::xml::Node>, FormError> {
    let fields = match value.filter(|v| !v.is_null()) {
        None => return Ok(Vec::new()),
        Some(Value::Array(fields)) => fields,
        Some(_) => return Err(refuse(path, "must be an array of fields")),
    };
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| field_from_json(f, &format!("{path}[{i}]")).map(crate::xml::Node::Element))
        .collect()
}

fn field_from_json(value: &Value, path: &str) -> Result<Element, FormError> {
    let json = value
        .as_object()
        .ok_or_else(|| refuse(path, "must be an object"))?;
    let mut field = Element::new("field");
    let field_type = match json.get("type").filter(|v| !v.is_null()) {
        None => None,
        Some(t) => Some(one_of(t, &format!("{path}.type"), &FIELD_TYPES)?),
    };
    match string(json, "var", path)? {
        Some(var) => field.set_attr("var", var),
        None if field_type == Some("fixed") => {}
        None => {
            return Err(refuse(
                &format!("{path}.var"),
                "is missing: every field but a fixed one needs a var",
            ))
        }
    }
    if let Some(t) = field_type {
        field.set_attr("type", t);
    }
    if let Some(label) = string(json, "label", path)? {
        field.set_attr("label", label);
    }
    if let Some(desc) = string(json, "desc", path)? {
        field = field.with_child(Element::new("desc").with_text(desc));
    }
    match json.get("required").filter(|v| !v.is_null()) {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => field = field.with_child(Element::new("required")),
        Some(_) => return Err(refuse(&format!("{path}.required"), "must be true or false")),
    }
    let value_path = format!("{path}.value");
    match json.get("value").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Array(values)) => {
            for (i, value) in values.iter().enumerate() {
                let text = scalar(value, &format!("{value_path}[{i}]"))?;
                field = field.with_child(Element::new("value").with_text(text));
            }
        }
        Some(value) => {
            let text = scalar(value, &value_path)?;
            field = field.with_child(Element::new("value").with_text(text));
        }
    }
    let options_path = format!("{path}.options");
    match json.get("options").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Array(options)) => {
            for (i, option) in options.iter().enumerate() {
                field =
                    field.with_child(option_from_json(option, &format!("{options_path}[{i}]"))?);
            }
        }
        Some(_) => return Err(refuse(&options_path, "must be an array of options")),
    }
    Ok(field)
}

fn option_from_json(value: &Value, path: &str) -> Result<Element, FormError> {
    let json = value
        .as_object()
        .ok_or_else(|| refuse(path, "must be an object with a value"))?;
    let mut option = Element::new("option");
    if let Some(label) = string(json, "label", path)? {
        option.set_attr("label", label);
    }
    let value = match json.get("value").filter(|v| !v.is_null()) {
        None => {
            return Err(refuse(
                &format!("{path}.value"),
                "is missing: an option needs a value",
            ))
        }
        Some(value) => scalar(value, &format!("{path}.value"))?,
    };
    Ok(option.with_child(Element::new("value").with_text(value)))
}

/// A string member `key` of `object` (at `path`), if given.
fn string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, FormError> {
    match object.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(refuse(&format!("{path}.{key}"), "must be a string")),
    }
}

/// A value's text: a string, a number, or a boolean written `true`/`false`.
fn scalar(value: &Value, path: &str) -> Result<String, FormError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(refuse(path, "must be a string, a number or a boolean")),
    }
}

fn one_of(value: &Value, path: &str, words: &[&'static str]) -> Result<&'static str, FormError> {
    json::word(value, words).ok_or_else(|| refuse(path, json::one_of(words)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;
    use serde_json::json;

    fn x(inner: &str) -> Element {
        parse(&format!(
            "<x xmlns='jabber:x:data' type='submit'>{inner}</x>"
        ))
        .unwrap()
    }

    #[test]
    fn every_field_type_reads_as_json_and_data() {
        let form = x("<title>T</title><instructions>a</instructions><instructions>b</instructions>\
             <field var='b' type='boolean'><value>1</value></field>\
             <field var='b0' type='boolean'><value>false</value></field>\
             <field var='bn' type='boolean'/>\
             <field type='fixed'><value>Just text</value></field>\
             <field var='h' type='hidden'><value>hv</value></field>\
             <field var='jm' type='jid-multi'><value>a@b</value><value>c@d</value></field>\
             <field var='js' type='jid-single'><value>a@b</value></field>\
             <field var='lm' type='list-multi'><value>x</value></field>\
             <field var='ls' type='list-single' label='L'><desc>D</desc><required/><value>o</value>\
               <option label='One'><value>o</value></option><option><value>t</value></option></field>\
             <field var='tm' type='text-multi'/>\
             <field var='tp' type='text-private'><value>pw</value></field>\
             <field var='ts' type='text-single'><value/></field>\
             <field var='u'><value>1</value><value>2</value></field>\
             <field var='u1'><value>one</value></field>");
        assert_eq!(
            to_json(&form),
            json!({"type": "submit", "title": "T", "instructions": "a\nb", "fields": [
                {"var": "b", "type": "boolean", "value": "1"},
                {"var": "b0", "type": "boolean", "value": "false"},
                {"var": "bn", "type": "boolean"},
                {"type": "fixed", "value": "Just text"},
                {"var": "h", "type": "hidden", "value": "hv"},
                {"var": "jm", "type": "jid-multi", "value": ["a@b", "c@d"]},
                {"var": "js", "type": "jid-single", "value": "a@b"},
                {"var": "lm", "type": "list-multi", "value": ["x"]},
                {"var": "ls", "type": "list-single", "label": "L", "desc": "D", "required": true,
                 "value": "o", "options": [{"label": "One", "value": "o"}, {"value": "t"}]},
                {"var": "tm", "type": "text-multi"},
                {"var": "tp", "type": "text-private", "value": "pw"},
                {"var": "ts", "type": "text-single", "value": ""},
                {"var": "u", "value": ["1", "2"]},
                {"var": "u1", "value": "one"},
            ]})
        );
        assert_eq!(
            Value::Object(data(&form, &FieldTypes::default())),
            json!({"b": true, "b0": false, "bn": false, "h": "hv", "jm": ["a@b", "c@d"],
                   "js": "a@b", "lm": ["x"], "ls": "o", "tm": [], "tp": "pw", "ts": "",
                   "u": ["1", "2"], "u1": "one"})
        );
    }

    #[test]
    fn data_takes_an_untyped_fields_type_from_the_form_sent() {
        let sent = from_json(
            &json!({"fields": [{"var": "ok", "type": "boolean"}, {"var": "tags", "type": "list-multi"}]}),
            "form",
        )
        .unwrap();
        let submit = x("<field var='ok'><value>true</value></field>\
             <field var='tags'><value>a</value></field><field var='other'/>");
        assert_eq!(
            Value::Object(data(&submit, &FieldTypes::of(&sent))),
            json!({"ok": true, "tags": ["a"], "other": ""})
        );
        assert_eq!(
            Value::Object(data(&submit, &FieldTypes::default())),
            json!({"ok": "true", "tags": "a", "other": ""})
        );
    }

    #[test]
    fn results_with_reported_and_items_read_and_write() {
        let json = json!({"type": "result", "title": "Hits", "fields": [],
            "reported": [{"var": "name", "label": "Name"}],
            "items": [[{"var": "name", "value": "a"}], [{"var": "name", "value": "b"}]]});
        let xml = from_json(&json, "form").unwrap();
        assert_eq!(
            xml.to_xml(),
            "<x xmlns='jabber:x:data' type='result'><title>Hits</title>\
             <reported><field var='name' label='Name'/></reported>\
             <item><field var='name'><value>a</value></field></item>\
             <item><field var='name'><value>b</value></field></item></x>"
        );
        assert_eq!(to_json(&xml), json);
    }

    #[test]
    fn json_writes_every_key_in_xep_0004_order() {
        let xml = from_json(
            &json!({"title": "W", "instructions": "one\ntwo", "fields": [
                {"var": "city", "type": "list-single", "label": "City", "desc": "Where",
                 "required": true, "value": "paris",
                 "options": [{"label": "Paris", "value": "paris"}, {"value": 7}]},
                {"var": "on", "type": "boolean", "value": true},
                {"var": "m", "type": "text-multi", "value": ["a", 2, false]},
                {"type": "fixed", "value": "note"},
                {"var": "opt", "required": false}]}),
            "command.form",
        )
        .unwrap();
        assert_eq!(
            xml.to_xml(),
            "<x xmlns='jabber:x:data' type='form'><instructions>one</instructions>\
             <instructions>two</instructions><title>W</title>\
             <field var='city' type='list-single' label='City'><desc>Where</desc><required/>\
             <value>paris</value><option label='Paris'><value>paris</value></option>\
             <option><value>7</value></option></field>\
             <field var='on' type='boolean'><value>true</value></field>\
             <field var='m' type='text-multi'><value>a</value><value>2</value><value>false</value></field>\
             <field type='fixed'><value>note</value></field><field var='opt'/></x>"
        );
    }

    #[test]
    fn wrong_json_names_the_key_path() {
        let refused = |form: Value| from_json(&form, "command.form").unwrap_err().to_string();
        for (form, path) in [
            (json!("x"), "'command.form' must be an object"),
            (
                json!({"type": "modal"}),
                "'command.form.type' must be one of",
            ),
            (json!({"title": 1}), "'command.form.title' must be a string"),
            (
                json!({"fields": {}}),
                "'command.form.fields' must be an array",
            ),
            (
                json!({"fields": [{"type": "text-single"}]}),
                "'command.form.fields[0].var' is missing",
            ),
            (
                json!({"fields": [{"var": "a", "type": "slider"}]}),
                "'command.form.fields[0].type' must be one of",
            ),
            (
                json!({"fields": [{"var": "a", "required": "yes"}]}),
                "'command.form.fields[0].required' must be true",
            ),
            (
                json!({"fields": [{"var": "a", "value": {}}]}),
                "'command.form.fields[0].value' must be a string",
            ),
            (
                json!({"fields": [{"var": "a", "value": [1, []]}]}),
                "'command.form.fields[0].value[1]' must be",
            ),
            (
                json!({"fields": [{"var": "a"}, {"var": "b", "options": [{"label": "x"}]}]}),
                "'command.form.fields[1].options[0].value' is missing",
            ),
            (
                json!({"fields": [{"var": "a", "options": "x"}]}),
                "'command.form.fields[0].options' must be an array",
            ),
            (
                json!({"reported": [{"var": "a"}], "items": [[{"label": "x"}]]}),
                "'command.form.items[0][0].var' is missing",
            ),
            (
                json!({"reported": [], "items": {}}),
                "'command.form.items' must be an array",
            ),
        ] {
            let why = refused(form.clone());
            assert!(why.starts_with(path), "{form}: {why}");
        }
    }

    #[test]
    fn find_takes_the_first_data_form() {
        let message = parse(
            "<message><x xmlns='jabber:x:oob'/><x xmlns='jabber:x:data' type='form'/></message>",
        )
        .unwrap();
        assert_eq!(find(&message).unwrap().attr("type"), Some("form"));
        assert_eq!(find(&parse("<message/>").unwrap()), None);
    }
}
