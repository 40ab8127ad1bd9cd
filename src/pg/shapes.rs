//! Which description applies to the rows coming back, for masking. No sockets: the relays
//! tell it what went up and what came back.
//!
//! A RowDescription is not resent with every result: the simple protocol sends one per
//! result set, the extended protocol one per Describe, and an Execute's rows carry none.
//! So the plan (what to do with each column) is kept per prepared statement and per
//! portal, and the server's replies are matched to the client's requests in order, as
//! the protocol guarantees. An Execute of a portal whose statement was never described
//! gets a Describe of its own, added by the gateway and answered only to it ([`Shapes::
//! execute`] says when), so no row is ever sent without a plan.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What a statement's results may be made from (its tables and statements).
pub type Tables = Arc<crate::sql::Reads>;

/// What the client asked for that the server will answer with descriptions or rows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// A simple Query: results until ReadyForQuery.
    Query(Tables),
    /// Describe of a prepared statement: ParameterDescription, then RowDescription or
    /// NoData.
    Statement(String),
    /// Describe of a portal; `hidden` when the gateway added it (its reply is dropped).
    Portal {
        name: String,
        hidden: bool,
    },
    /// Execute: rows, then CommandComplete, PortalSuspended, EmptyQuery or an error.
    /// What the rows are is taken when it is sent: the portal's latest Describe, else
    /// the statement and formats it was bound with (a later Bind may reuse the name).
    Execute {
        binding: Arc<Binding>,
        described: bool,
    },
    Sync,
}

/// Result format codes (0 text, 1 binary), shared rather than copied.
pub type Formats = Arc<[i16]>;

/// What a Bind made of a portal. Kept behind an `Arc` and replaced only when a Bind
/// changes it, so the usual prepared-statement loop (the same Bind again and again)
/// allocates nothing.
#[derive(Debug, PartialEq, Eq)]
struct Binding {
    portal: String,
    statement: String,
    formats: Formats,
}

/// How the rows of one result are to be read and rewritten: the plan built from its
/// RowDescription, and each column's format (0 text, 1 binary).
#[derive(Debug)]
pub struct Shape<P> {
    pub plan: Arc<P>,
    pub formats: Formats,
}

impl<P> Clone for Shape<P> {
    fn clone(&self) -> Self {
        Shape {
            plan: self.plan.clone(),
            formats: self.formats.clone(),
        }
    }
}

/// What the relay does with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Forward it.
    Forward,
    /// A RowDescription the client asked for: build its plan, [`Shapes::described`] it,
    /// and forward it.
    Describe,
    /// A reply to a Describe the gateway added: build its plan, but do not forward it.
    DescribeHidden,
    /// A reply to a Describe the gateway added (ParameterDescription, NoData): drop it.
    Drop,
}

/// Plans per statement and portal, and the requests awaiting their replies.
pub struct Shapes<P> {
    expected: VecDeque<Expect>,
    statements: HashMap<String, Arc<P>>,
    /// Portal → its Bind, and whether a Describe of the portal has been sent since.
    bound: HashMap<String, (Arc<Binding>, bool)>,
    portals: HashMap<String, Shape<P>>,
    /// Statements the client has sent a Describe for since their Parse.
    described: HashMap<String, bool>,
    /// The tables each prepared statement reads or writes, from its Parse.
    tables: HashMap<String, Tables>,
    /// The shape of the rows arriving now.
    current: Option<Shape<P>>,
}

impl<P> Default for Shapes<P> {
    fn default() -> Self {
        Shapes {
            expected: VecDeque::new(),
            statements: HashMap::new(),
            bound: HashMap::new(),
            portals: HashMap::new(),
            described: HashMap::new(),
            tables: HashMap::new(),
            current: None,
        }
    }
}

impl<P> Shapes<P> {
    // Client → server.

    pub fn query(&mut self, tables: Tables) {
        self.expected.push_back(Expect::Query(tables));
    }

    pub fn parse(&mut self, statement: &str, tables: Tables) {
        self.described.insert(statement.to_string(), false);
        self.tables.insert(statement.to_string(), tables);
    }

    /// The tables behind the description [`Shapes::reply`] just asked about.
    pub fn tables(&self) -> Tables {
        let statement = match self.expected.front() {
            Some(Expect::Query(tables)) => return tables.clone(),
            Some(Expect::Statement(name)) => Some(name),
            Some(Expect::Portal { name, .. }) => self.bound.get(name).map(|(b, _)| &b.statement),
            Some(Expect::Execute { binding, .. }) => Some(&binding.statement),
            _ => None,
        };
        statement
            .and_then(|s| self.tables.get(s))
            .cloned()
            .unwrap_or_default()
    }

    pub fn bind(
        &mut self,
        portal: &str,
        statement: &str,
        formats: impl ExactSizeIterator<Item = i16> + Clone,
    ) {
        let same =
            |b: &Binding| b.statement == statement && b.formats.iter().copied().eq(formats.clone());
        match self.bound.get_mut(portal) {
            Some((b, described)) => {
                if !same(b) {
                    *b = Arc::new(Binding {
                        portal: portal.to_string(),
                        statement: statement.to_string(),
                        formats: formats.collect(),
                    });
                }
                *described = false;
            }
            None => {
                let binding = Binding {
                    portal: portal.to_string(),
                    statement: statement.to_string(),
                    formats: formats.collect(),
                };
                self.bound
                    .insert(portal.to_string(), (Arc::new(binding), false));
            }
        }
    }

    pub fn describe_statement(&mut self, statement: &str) {
        self.described.insert(statement.to_string(), true);
        self.expected
            .push_back(Expect::Statement(statement.to_string()));
    }

    pub fn describe_portal(&mut self, portal: &str) {
        if let Some((_, described)) = self.bound.get_mut(portal) {
            *described = true;
        }
        self.expected.push_back(Expect::Portal {
            name: portal.to_string(),
            hidden: false,
        });
    }

    /// An Execute of `portal`. `true`: the gateway must send a Describe of the portal
    /// first (nothing has described its statement), whose reply only it will read.
    pub fn execute(&mut self, portal: &str) -> bool {
        let (binding, mut described) = match self.bound.get(portal) {
            Some((b, d)) => (b.clone(), *d),
            // Not bound (the server will say so): described by the gateway, to be safe.
            None => (
                Arc::new(Binding {
                    portal: portal.to_string(),
                    statement: String::new(),
                    formats: Formats::from([]),
                }),
                false,
            ),
        };
        let known = described || self.described.get(&binding.statement) == Some(&true);
        if !known {
            self.expected.push_back(Expect::Portal {
                name: portal.to_string(),
                hidden: true,
            });
            described = true;
        }
        self.expected
            .push_back(Expect::Execute { binding, described });
        !known
    }

    pub fn sync(&mut self) {
        self.expected.push_back(Expect::Sync);
    }

    pub fn close_statement(&mut self, statement: &str) {
        self.described.remove(statement);
    }

    pub fn close_portal(&mut self, portal: &str) {
        self.bound.remove(portal);
    }

    // Server → client.

    /// What to do with a server message with tag `tag`, before its body is looked at.
    pub fn reply(&mut self, tag: u8) -> Reply {
        let hidden = matches!(
            self.expected.front(),
            Some(Expect::Portal { hidden: true, .. })
        );
        match tag {
            b'T' if hidden => Reply::DescribeHidden,
            b'T' => Reply::Describe,
            b'n' if hidden => {
                self.expected.pop_front();
                Reply::Drop
            }
            b'n' => {
                if matches!(
                    self.expected.front(),
                    Some(Expect::Statement(_) | Expect::Portal { .. })
                ) {
                    self.expected.pop_front();
                }
                Reply::Forward
            }
            b'C' | b's' | b'I' => {
                if matches!(self.expected.front(), Some(Expect::Execute { .. })) {
                    self.expected.pop_front();
                    self.current = None;
                }
                Reply::Forward
            }
            b'E' => {
                // In the extended protocol the server skips to the Sync after an error;
                // inside a simple Query, the query's ReadyForQuery ends it.
                if !matches!(self.expected.front(), Some(Expect::Query(_)) | None) {
                    while !matches!(self.expected.front(), Some(Expect::Sync) | None) {
                        self.expected.pop_front();
                    }
                }
                self.current = None;
                Reply::Forward
            }
            b'Z' => {
                while let Some(e) = self.expected.pop_front() {
                    if matches!(e, Expect::Query(_) | Expect::Sync) {
                        break;
                    }
                }
                self.current = None;
                Reply::Forward
            }
            _ => Reply::Forward,
        }
    }

    /// The plan of the RowDescription [`Shapes::reply`] asked about, with its formats.
    pub fn described(&mut self, plan: Arc<P>, formats: Formats) {
        match self.expected.front() {
            Some(Expect::Statement(name)) => {
                let name = name.clone();
                self.expected.pop_front();
                self.statements.insert(name, plan);
            }
            Some(Expect::Portal { name, .. }) => {
                let name = name.clone();
                self.expected.pop_front();
                self.portals.insert(name, Shape { plan, formats });
            }
            // A simple query's result set (or rows the gateway cannot place: the plan
            // still governs them).
            _ => self.current = Some(Shape { plan, formats }),
        }
    }

    /// The shape of a DataRow arriving now; `None` only if the server sends rows nothing
    /// described, which the caller refuses to forward.
    pub fn row(&mut self) -> Option<&Shape<P>> {
        if self.current.is_none()
            && let Some(Expect::Execute { binding, described }) = self.expected.front()
        {
            self.current = if *described {
                self.portals.get(&binding.portal).cloned()
            } else {
                self.statements.get(&binding.statement).map(|plan| Shape {
                    plan: plan.clone(),
                    formats: binding.formats.clone(),
                })
            };
        }
        self.current.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan that just names what it describes.
    type Shapes = super::Shapes<&'static str>;

    fn plan(s: &mut Shapes) -> Option<&'static str> {
        s.row().map(|shape| *shape.plan)
    }

    #[test]
    fn a_simple_query_uses_each_result_sets_description() {
        let mut s = Shapes::default();
        s.query(Tables::default());
        assert_eq!(s.reply(b'T'), Reply::Describe);
        s.described(Arc::new("first"), Formats::from([0]));
        assert_eq!(plan(&mut s), Some("first"));
        s.reply(b'C');
        assert_eq!(s.reply(b'T'), Reply::Describe);
        s.described(Arc::new("second"), Formats::from([0]));
        assert_eq!(plan(&mut s), Some("second"));
        s.reply(b'C');
        s.reply(b'Z');
        assert_eq!(plan(&mut s), None);
    }

    #[test]
    fn a_prepared_statement_described_once_is_executed_many_times() {
        // tokio-postgres: Parse + Describe S + Sync, then Bind + Execute + Sync, twice.
        let mut s = Shapes::default();
        s.parse("s1", Tables::default());
        s.describe_statement("s1");
        s.sync();
        s.reply(b'1');
        s.reply(b't');
        assert_eq!(s.reply(b'T'), Reply::Describe);
        s.described(Arc::new("s1-plan"), Formats::from([0, 0]));
        s.reply(b'Z');
        for _ in 0..2 {
            s.bind("", "s1", [1].into_iter());
            assert!(!s.execute(""), "described: no Describe of its own");
            s.sync();
            s.reply(b'2');
            let shape = s.row().expect("planned");
            assert_eq!((*shape.plan, &shape.formats[..]), ("s1-plan", &[1][..]));
            s.reply(b'C');
            s.reply(b'Z');
        }
    }

    #[test]
    fn pipelined_statements_keep_their_own_plans() {
        let mut s = Shapes::default();
        for name in ["a", "b"] {
            s.parse(name, Tables::default());
            s.describe_statement(name);
        }
        s.bind("pa", "a", std::iter::empty());
        s.execute("pa");
        s.bind("pb", "b", std::iter::empty());
        s.execute("pb");
        s.sync();
        for name in ["a-plan", "b-plan"] {
            s.reply(b'1');
            s.reply(b't');
            s.reply(b'T');
            s.described(Arc::new(name), Formats::from([]));
        }
        s.reply(b'2');
        assert_eq!(plan(&mut s), Some("a-plan"));
        s.reply(b'C');
        s.reply(b'2');
        assert_eq!(plan(&mut s), Some("b-plan"));
        s.reply(b'C');
        s.reply(b'Z');
    }

    #[test]
    fn an_execute_nothing_described_gets_a_hidden_describe() {
        let mut s = Shapes::default();
        s.parse("", Tables::default());
        s.bind("", "", std::iter::empty());
        assert!(s.execute(""), "the gateway must describe it");
        s.sync();
        s.reply(b'1');
        s.reply(b'2');
        assert_eq!(s.reply(b'T'), Reply::DescribeHidden);
        s.described(Arc::new("hidden-plan"), Formats::from([0]));
        assert_eq!(plan(&mut s), Some("hidden-plan"));
        s.reply(b'C');
        s.reply(b'Z');
        // A statement without result columns: its NoData is the gateway's, not the client's.
        s.parse("", Tables::default());
        s.bind("", "", std::iter::empty());
        assert!(s.execute(""));
        assert_eq!(s.reply(b'n'), Reply::Drop);
    }

    #[test]
    fn a_reparsed_unnamed_statement_is_described_again() {
        let mut s = Shapes::default();
        s.parse("", Tables::default());
        s.describe_statement("");
        s.reply(b't');
        s.reply(b'T');
        s.described(Arc::new("old"), Formats::from([]));
        s.parse("", Tables::default());
        s.bind("", "", std::iter::empty());
        assert!(s.execute(""), "the old plan belongs to another statement");
    }

    #[test]
    fn an_error_skips_to_the_sync() {
        let mut s = Shapes::default();
        s.parse("x", Tables::default());
        s.describe_statement("x");
        s.bind("p", "x", std::iter::empty());
        s.execute("p");
        s.sync();
        s.query(Tables::default());
        // Parse fails: the Describe and Execute get no reply.
        s.reply(b'E');
        s.reply(b'Z');
        assert_eq!(s.reply(b'T'), Reply::Describe);
        s.described(Arc::new("query-plan"), Formats::from([]));
        assert_eq!(plan(&mut s), Some("query-plan"));
    }

    #[test]
    fn an_unnamed_portal_bound_again_before_the_first_runs_keeps_each_plan() {
        // tokio-postgres pipelining two prepared statements through the unnamed portal.
        let mut s = Shapes::default();
        for name in ["a", "b"] {
            s.parse(name, Tables::default());
            s.describe_statement(name);
            s.sync();
            s.reply(b't');
            s.reply(b'T');
            s.described(
                Arc::new(if name == "a" { "a-plan" } else { "b-plan" }),
                Formats::from([]),
            );
            s.reply(b'Z');
        }
        s.bind("", "b", [1].into_iter());
        assert!(!s.execute(""));
        s.sync();
        s.bind("", "a", [1].into_iter());
        assert!(!s.execute(""));
        s.sync();
        s.reply(b'2');
        assert_eq!(plan(&mut s), Some("b-plan"));
        s.reply(b'C');
        s.reply(b'Z');
        s.reply(b'2');
        assert_eq!(plan(&mut s), Some("a-plan"));
    }
}
