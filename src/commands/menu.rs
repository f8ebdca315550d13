//! A host's menu of commands (docs/contract.md §13.1): the configured one
//! (`component_post_commands`), or the one the web service pushed, and the
//! service discovery that shows it (XEP-0030, XEP-0050 §2.2).

use serde_json::Value;

use super::XMLNS;
use crate::xml::Element;

const XMLNS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const XMLNS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// One command of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    pub node: String,
    pub name: String,
}

impl MenuItem {
    /// A node, named after itself unless `name` is given.
    pub fn new(node: &str, name: Option<&str>) -> MenuItem {
        MenuItem {
            node: node.to_owned(),
            name: name.unwrap_or(node).to_owned(),
        }
    }
}

/// The menu: the configured commands unless the web service pushed others.
#[derive(Debug, Clone, Default)]
pub struct Menu {
    configured: Vec<MenuItem>,
    pushed: Option<Vec<MenuItem>>,
}

impl Menu {
    pub fn new(configured: Vec<MenuItem>) -> Menu {
        Menu {
            configured,
            pushed: None,
        }
    }

    pub fn items(&self) -> &[MenuItem] {
        self.pushed.as_deref().unwrap_or(&self.configured)
    }

    pub fn find(&self, node: &str) -> Option<&MenuItem> {
        self.items().iter().find(|item| item.node == node)
    }

    /// Replaces the pushed menu (`None`: back to the configured one).
    pub fn push(&mut self, pushed: Option<Vec<MenuItem>>) {
        self.pushed = pushed;
    }

    /// The pushed menu as the JSON kept in storage, if there is one.
    pub fn pushed_json(&self) -> Option<String> {
        self.pushed.as_deref().map(|items| {
            let list: Vec<Value> = items
                .iter()
                .map(|i| serde_json::json!({"node": i.node, "name": i.name}))
                .collect();
            Value::Array(list).to_string()
        })
    }

    /// disco#items on the commands node, sent to `jid`: one item per
    /// command, in menu order.
    pub fn disco_items(&self, jid: &str) -> Element {
        let mut query = Element::new("query")
            .with_attr("xmlns", XMLNS_DISCO_ITEMS)
            .with_attr("node", XMLNS);
        for item in self.items() {
            query = query.with_child(
                Element::new("item")
                    .with_attr("jid", jid)
                    .with_attr("node", item.node.as_str())
                    .with_attr("name", item.name.as_str()),
            );
        }
        query
    }

    /// disco#info on a command's node, if it is one of the menu's.
    pub fn disco_info(&self, node: &str) -> Option<Element> {
        let item = self.find(node)?;
        let feature = |var: &str| Element::new("feature").with_attr("var", var);
        Some(
            Element::new("query")
                .with_attr("xmlns", XMLNS_DISCO_INFO)
                .with_attr("node", node)
                .with_child(
                    Element::new("identity")
                        .with_attr("category", "automation")
                        .with_attr("type", "command-node")
                        .with_attr("name", item.name.as_str()),
                )
                .with_child(feature(XMLNS))
                .with_child(feature(crate::forms::XMLNS)),
        )
    }
}

/// A pushed menu (`{"commands": [...]}`'s list) read, or why not, naming
/// the key path (`commands[2].node`). Items: `"node"` or `{"node", "name"}`.
pub fn from_json(list: &Value) -> Result<Vec<MenuItem>, String> {
    let Value::Array(list) = list else {
        return Err("'commands' must be an array, or null for the configured menu".into());
    };
    let mut items: Vec<MenuItem> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let path = format!("commands[{i}]");
        let item = match entry {
            Value::String(node) => MenuItem::new(node, None),
            Value::Object(object) => {
                let member = |key: &str| match object.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.as_str())),
                    Some(_) => Err(format!("'{path}.{key}' must be a string")),
                };
                let node = member("node")?
                    .ok_or_else(|| format!("'{path}.node' is missing: a command needs a node"))?;
                MenuItem::new(node, member("name")?)
            }
            _ => {
                return Err(format!(
                    "'{path}' must be a node name or {{\"node\", \"name\"}}"
                ))
            }
        };
        check(&items, &item).map_err(|why| format!("'{path}.node' {why}"))?;
        items.push(item);
    }
    Ok(items)
}

/// Whether `item` may join `items`: a node is not empty, and not there
/// already.
pub fn check(items: &[MenuItem], item: &MenuItem) -> Result<(), &'static str> {
    if item.node.is_empty() {
        return Err("must not be empty");
    }
    if items.iter().any(|i| i.node == item.node) {
        return Err("is in the menu already");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pushed_menu_replaces_the_configured_one_until_null() {
        let mut menu = Menu::new(vec![MenuItem::new("help", None)]);
        assert_eq!(menu.items(), [MenuItem::new("help", Some("help"))]);
        assert_eq!(menu.pushed_json(), None);
        let pushed = from_json(&json!([{"node": "weather", "name": "Weather"}, "ping"])).unwrap();
        menu.push(Some(pushed));
        assert_eq!(menu.items().len(), 2);
        assert_eq!(menu.find("ping").unwrap().name, "ping");
        assert_eq!(menu.find("help"), None);
        assert_eq!(
            menu.pushed_json().unwrap(),
            r#"[{"name":"Weather","node":"weather"},{"name":"ping","node":"ping"}]"#
        );
        menu.push(None);
        assert_eq!(menu.items()[0].node, "help");
    }

    #[test]
    fn wrong_pushed_menus_name_the_key_path() {
        for (list, why) in [
            (
                json!({}),
                "'commands' must be an array, or null for the configured menu",
            ),
            (json!(["a", 3]), "'commands[1]' must be a node name"),
            (json!([{"name": "x"}]), "'commands[0].node' is missing"),
            (
                json!(["a", {"node": 1}]),
                "'commands[1].node' must be a string",
            ),
            (
                json!(["a", {"node": "b", "name": []}]),
                "'commands[1].name' must be a string",
            ),
            (
                json!(["a", "b", "a"]),
                "'commands[2].node' is in the menu already",
            ),
            (json!([""]), "'commands[0].node' must not be empty"),
        ] {
            let refused = from_json(&list).unwrap_err();
            assert!(refused.starts_with(why), "{list}: {refused}");
        }
    }

    #[test]
    fn disco_lists_the_commands_in_order_and_describes_each() {
        let menu = Menu::new(vec![
            MenuItem::new("weather", Some("Weather")),
            MenuItem::new("help", None),
        ]);
        assert_eq!(
            menu.disco_items("echo@bot.localhost").to_xml(),
            "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'>\
             <item jid='echo@bot.localhost' node='weather' name='Weather'/>\
             <item jid='echo@bot.localhost' node='help' name='help'/></query>"
        );
        assert_eq!(
            menu.disco_info("weather").unwrap().to_xml(),
            "<query xmlns='http://jabber.org/protocol/disco#info' node='weather'>\
             <identity category='automation' type='command-node' name='Weather'/>\
             <feature var='http://jabber.org/protocol/commands'/><feature var='jabber:x:data'/></query>"
        );
        assert_eq!(menu.disco_info("nope"), None);
        assert_eq!(
            Menu::default().disco_items("bot.localhost").to_xml(),
            "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>"
        );
    }
}
