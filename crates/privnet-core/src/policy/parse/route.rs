//! The `[[route]]` entries of a policy file: `prefix`, `via`, optional `id` and `from`.

use std::ops::Range;

use toml::de::DeTable;

use super::reader::{join, parse_prefix, safe, Parser, Val};
use crate::policy::spec::RouteSpec;

const ROUTE_KEYS: &[&str] = &["id", "prefix", "via", "from"];

impl Parser<'_> {
    /// Every `[[route]]` entry (the ones with problems are reported and left out).
    pub(super) fn routes(&mut self, v: &Val<'_>) -> Vec<RouteSpec> {
        let Some(items) = self.tables(v, "route") else {
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, (span, t))| self.route(t, span, &format!("route[{i}]")))
            .collect()
    }

    fn route(&mut self, t: &DeTable<'_>, span: Range<usize>, key: &str) -> Option<RouteSpec> {
        self.unknown_keys(t, key, ROUTE_KEYS);
        let id = t.get("id").and_then(|v| self.string(v, &join(key, "id")));
        let prefix = match t.get("prefix") {
            Some(v) => match self.string(v, &join(key, "prefix")) {
                Some(s) => {
                    let p = parse_prefix(&s);
                    if p.is_none() {
                        self.err(
                            v.span(),
                            &join(key, "prefix"),
                            format!(
                                "an IP prefix such as `10.9.0.0/24`, `0.0.0.0/0` or `::/0`; not `{}`",
                                safe(&s)
                            ),
                        );
                    }
                    p
                }
                None => None,
            },
            None => {
                self.err(
                    span.clone(),
                    &join(key, "prefix"),
                    "a `prefix` (the destinations this entry routes): this key is required",
                );
                None
            }
        };
        let via = match t.get("via") {
            Some(v) => self.strings(v, &join(key, "via")),
            None => {
                self.err(
                    span.clone(),
                    &join(key, "via"),
                    "a `via` list of gateway member names, in priority order: this key is required",
                );
                None
            }
        };
        let from = match t.get("from") {
            Some(v) => Some(self.selector(v, &join(key, "from"))?),
            None => None,
        };
        Some(RouteSpec {
            id,
            prefix: prefix?,
            via: via?,
            from,
            location: self.at(span),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::parse_policy;

    #[test]
    fn route_entries_parse_and_problems_name_the_line() {
        let text = r#"
default = "allow"

[[route]]
id = "lan"
prefix = "10.9.0.0/24"
via = ["gw-a", "gw-b"]
from = { groups = { any = ["staff"] } }

[[route]]
prefix = "::/0"
via = "exit"
"#;
        let spec = parse_policy(text, "p.toml").unwrap();
        assert_eq!(spec.routes.len(), 2);
        assert_eq!(spec.routes[0].id.as_deref(), Some("lan"));
        assert_eq!(spec.routes[0].via, vec!["gw-a", "gw-b"]);
        assert!(spec.routes[0].from.is_some());
        assert_eq!(spec.routes[1].prefix, "::/0".parse().unwrap());
        assert_eq!(spec.routes[0].location.unwrap().line, 4);

        let bad = "[[route]]\nprefix = \"10.9.0.0/33\"\nvias = [\"a\"]\n";
        let e = parse_policy(bad, "p.toml").unwrap_err().to_string();
        assert!(e.contains("p.toml:2"), "{e}");
        assert!(e.contains("route[0].prefix"), "{e}");
        assert!(e.contains("route[0].vias"), "{e}");
        assert!(e.contains("route[0].via"), "{e}");
    }
}
