//! What the results of one query string may be made from: the tables it names and the
//! text of every statement that can return rows, with `FETCH` and `EXECUTE` replaced by
//! the cursor or prepared statement they run (declared earlier in the session, or
//! earlier in the same string). Masking follows these through [`super::lineage`].

use std::collections::HashMap;
use std::sync::Arc;

use sqlparser::ast::Statement;

use super::Analysis;
use super::ident::ident;

/// The reads of a query string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reads {
    /// The tables its statements read or write (EXPLAIN's left out: its rows are a
    /// plan), as statements name them.
    pub tables: Vec<String>,
    /// Each statement that may return rows, as text.
    pub statements: Vec<String>,
    /// Some statement returns rows this cannot follow (a cursor or prepared statement
    /// it did not see declared, CALL).
    pub untraced: bool,
    /// Some statement writes: what its RETURNING gives back may have come from
    /// elsewhere, whatever table the wire names.
    pub writes: bool,
    /// The session's `search_path` when it set one: unqualified names resolve by it.
    pub search_path: Option<String>,
    /// The statements' shapes (fingerprints): reads of the same shape have the same
    /// lineage, whatever their literals.
    pub shape: String,
}

/// Most cursors and prepared statements remembered per session (then all forgotten:
/// what is forgotten is untraced, and masked as such).
const MAX_NAMED: usize = 256;

/// The cursors and SQL-level prepared statements of a session, by name.
#[derive(Debug, Default)]
pub struct Named(HashMap<String, Arc<Reads>>);

impl Reads {
    /// The reads of `analysis`; cursors and prepared statements it declares are added
    /// to `named` when `admitted`.
    pub fn of(analysis: &Analysis, named: &mut Named, admitted: bool) -> Reads {
        let mut r = Reads::default();
        for s in &analysis.statements {
            let add_tables = |r: &mut Reads| {
                if s.kind != "explain" {
                    for t in s.tables_read.iter().chain(&s.tables_written) {
                        if !r.tables.contains(t) {
                            r.tables.push(t.clone());
                        }
                    }
                }
            };
            let stmt = match s.kind {
                "declare" | "prepare" | "fetch" | "execute" | "call" => {
                    super::parse(&s.text).and_then(|mut v| v.pop())
                }
                _ => None,
            };
            match (s.kind, stmt) {
                ("declare", Some(Statement::Declare { stmts, .. })) => {
                    add_tables(&mut r);
                    for d in stmts {
                        if let (Some(name), Some(q)) = (d.names.first(), &d.for_query)
                            && admitted
                        {
                            named.insert(
                                format!("cursor {}", ident(name)),
                                Reads::one(q.to_string(), &add_tables),
                            );
                        }
                    }
                }
                (
                    "prepare",
                    Some(Statement::Prepare {
                        name, statement, ..
                    }),
                ) => {
                    add_tables(&mut r);
                    if admitted {
                        named.insert(
                            format!("prepared {}", ident(&name)),
                            Reads::one(statement.to_string(), &add_tables),
                        );
                    }
                }
                ("fetch", Some(Statement::Fetch { name, .. })) => {
                    r.runs(named.0.get(&format!("cursor {}", ident(&name))));
                }
                ("execute", Some(Statement::Execute { name: Some(n), .. })) => {
                    r.runs(
                        named
                            .0
                            .get(&format!("prepared {}", super::ident::object_name(&n))),
                    );
                }
                ("fetch" | "execute" | "call", _) => {
                    add_tables(&mut r);
                    r.untraced = true;
                }
                // DECLARE and PREPARE that did not parse return no rows.
                ("declare" | "prepare", _) => add_tables(&mut r),
                _ => {
                    add_tables(&mut r);
                    r.writes |= !s.tables_written.is_empty();
                    r.statements.push(s.text.clone());
                    r.shape.push_str(&s.fingerprint);
                    r.shape.push('\0');
                }
            }
        }
        r
    }

    /// The reads of one statement `text` (a cursor's query, a prepared statement), over
    /// the tables `add_tables` adds.
    fn one(text: String, add_tables: &dyn Fn(&mut Reads)) -> Arc<Reads> {
        let mut r = Reads {
            writes: crate::sql::analyze(&text)
                .statements
                .iter()
                .any(|s| !s.tables_written.is_empty()),
            shape: text.clone(),
            statements: vec![text],
            ..Reads::default()
        };
        add_tables(&mut r);
        Arc::new(r)
    }

    /// Adds what a cursor or prepared statement reads (untraced when unknown).
    fn runs(&mut self, named: Option<&Arc<Reads>>) {
        let Some(n) = named else {
            self.untraced = true;
            return;
        };
        for t in &n.tables {
            if !self.tables.contains(t) {
                self.tables.push(t.clone());
            }
        }
        self.statements.extend(n.statements.iter().cloned());
        self.untraced |= n.untraced;
        self.writes |= n.writes;
        self.shape.push_str(&n.shape);
        self.shape.push('\0');
    }
}

/// The `search_path` a `SET search_path ...` statement gives, as the setting's own
/// syntax writes it (`app, "My Schema"`); `None` for DEFAULT or what is not such a SET.
pub fn search_path_set(text: &str) -> Option<String> {
    use sqlparser::ast::{Expr, Set, Value};
    let Some(Statement::Set(Set::SingleAssignment { values, .. })) =
        super::parse(text).and_then(|mut v| v.pop())
    else {
        return None;
    };
    let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut parts = Vec::new();
    for v in &values {
        parts.push(match v {
            Expr::Identifier(i) if i.quote_style.is_some() => quoted(&i.value),
            Expr::Identifier(i) if i.value.eq_ignore_ascii_case("default") => return None,
            Expr::Identifier(i) => quoted(&i.value.to_lowercase()),
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => quoted(s),
                _ => return None,
            },
            _ => return None,
        });
    }
    Some(parts.join(", "))
}

impl Named {
    fn insert(&mut self, name: String, reads: Arc<Reads>) {
        if self.0.len() >= MAX_NAMED {
            self.0.clear();
        }
        self.0.insert(name, reads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_runs_the_cursor_declared_before_it() {
        let mut named = Named::default();
        let a = crate::sql::analyze(
            "BEGIN; DECLARE c CURSOR FOR SELECT upper(password) FROM customers; FETCH 1 FROM c",
        );
        let r = Reads::of(&a, &mut named, true);
        assert!(!r.untraced);
        assert_eq!(r.tables, ["customers"]);
        assert_eq!(
            r.statements.len(),
            2,
            "BEGIN, then the cursor's query: {r:?}"
        );
        assert!(r.statements[1].contains("upper(password)"));

        let later = Reads::of(&crate::sql::analyze("FETCH ALL FROM c"), &mut named, true);
        assert_eq!(later.statements, r.statements[1..]);
        assert_eq!(later.tables, ["customers"]);

        let unknown = Reads::of(&crate::sql::analyze("FETCH ALL FROM d"), &mut named, true);
        assert!(unknown.untraced);
    }

    #[test]
    fn a_search_path_is_read_as_the_setting_reads_it() {
        assert_eq!(
            search_path_set("SET search_path TO app, \"My Schema\", 'x y'").as_deref(),
            Some("\"app\", \"My Schema\", \"x y\"")
        );
        assert_eq!(search_path_set("SET search_path TO DEFAULT"), None);
    }

    #[test]
    fn an_execute_runs_the_statement_prepared_before_it() {
        let mut named = Named::default();
        let a = crate::sql::analyze("PREPARE p AS SELECT password FROM customers");
        let refused = Reads::of(&a, &mut Named::default(), false);
        assert!(refused.statements.is_empty());
        Reads::of(&a, &mut named, true);
        let r = Reads::of(&crate::sql::analyze("EXECUTE p"), &mut named, true);
        assert!(!r.untraced);
        assert!(r.statements[0].contains("password"));
    }
}
