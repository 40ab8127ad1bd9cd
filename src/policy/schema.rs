//! Which fact paths each subject offers, so a typo in a rule file is a load error with a
//! line number instead of a condition that silently never matches.

use super::rule::{Expr, Operand, PathBase, Subject};

/// Facts about one SQL statement (`sql` rules): `sql::SqlFacts` as it serializes;
/// `facts::issue_10_the_schema_lists_exactly_the_facts_provided` checks both ways.
pub const SQL_FACTS: &[&str] = &[
    "stmt",
    "stmt.kind",
    "stmt.kinds",
    "stmt.is_ddl",
    "stmt.is_dml",
    "stmt.drop_kind",
    "stmt.tables_read",
    "stmt.tables_written",
    "stmt.has_where",
    "stmt.where_always_true",
    "stmt.writes",
    "stmt.writes.kind",
    "stmt.writes.table",
    "stmt.writes.has_where",
    "stmt.writes.where_always_true",
    "stmt.functions",
    "stmt.copy_program",
    "stmt.copy_file",
    "stmt.limit",
    "stmt.statement_count",
    "stmt.index",
    "stmt.text",
    "stmt.fingerprint",
    "stmt.normalized",
    "stmt.parsed",
    "stmt.settings",
    "stmt.sets",
    "stmt.sets.name",
    "stmt.sets.value",
    "stmt.temporary",
    "stmt.concurrently",
    "stmt.explain_analyze",
    "stmt.lock_mode",
    "stmt.vacuum_full",
    "stmt.estimate",
    "stmt.estimated_rows",
    "stmt.table_rows",
    "stmt.estimated_percent",
    "stmt.disagreement",
    "stmt.read_by_postgres",
];

/// The `stmt` facts that every statement of one shape has alike: the session's analyzer
/// gives all texts with one quick key the same facts but their own text, and the
/// planner's estimate comes later. A `sql` rule that reads only these, `agent` and
/// `target` judges every statement of a shape in a session the same way, so its result
/// is remembered per shape ([`super::Memo`]). An allow-list: a fact added later is judged
/// every time until it is listed here.
pub const SQL_SHAPE_FACTS: &[&str] = &[
    "kind",
    "kinds",
    "is_ddl",
    "is_dml",
    "drop_kind",
    "tables_read",
    "tables_written",
    "has_where",
    "where_always_true",
    "writes",
    "functions",
    "copy_program",
    "copy_file",
    "limit",
    "statement_count",
    "index",
    "fingerprint",
    "normalized",
    "parsed",
    "settings",
    "sets",
    "temporary",
    "concurrently",
    "explain_analyze",
    "lock_mode",
    "vacuum_full",
    "read_by_postgres",
];

/// Facts about one ref update of a push (`git` rules): `git::inspect::facts` as they
/// serialize, checked both ways by the same test.
pub const GIT_FACTS: &[&str] = &[
    "ref",
    "ref.name",
    "ref.branch",
    "ref.tag",
    "ref.kind",
    "ref.namespace",
    "ref.special",
    "ref.force",
    "ref.protected",
    "ref.old",
    "ref.new",
    "ref.type",
    "ref.peeled",
    "ref.tagger",
    "ref.tagger_email",
    "ref.tag_message",
    "push",
    "push.commits",
    "push.commits.id",
    "push.commits.author",
    "push.commits.author_email",
    "push.commits.committer",
    "push.commits.committer_email",
    "push.commits.message",
    "push.commits.signed",
    "push.commits.parents",
    "push.commit_count",
    "push.files",
    "push.files.path",
    "push.files.size",
    "push.files.blob",
    "push.files.commit",
    "push.files.kind",
    "push.files.mode",
    "push.secrets",
    "push.secrets.detector",
    "push.secrets.path",
    "push.secrets.commit",
    "push.secrets.line",
    "push.secrets.column",
    "push.secrets.blob",
    "push.unscanned",
    "push.unscanned.path",
    "push.unscanned.blob",
    "push.unscanned.size",
    "push.unscanned.reason",
    "push.unreachable",
    "push.largest_blob",
    "push.largest_blob_path",
    "push.options",
    "push.refs",
];

/// Facts about the caller and the target, common to every subject.
pub const COMMON_FACTS: &[&str] = &[
    "agent",
    "agent.sub",
    "agent.groups",
    "agent.name",
    "target",
    "target.name",
];

/// Facts about one output column of a result (`mask` rules): `gateway::mask::Column`.
pub const MASK_FACTS: &[&str] = &[
    "column",
    "column.name",
    "column.type",
    "column.sources",
    "column.derived",
    "column.opaque",
    "column.detectors",
];

const SQL_ROOTS: &[&str] = &["stmt", "agent", "target"];
const GIT_ROOTS: &[&str] = &["ref", "push", "agent", "target"];
const MASK_ROOTS: &[&str] = &["column", "agent", "target"];

pub fn roots(subject: Subject) -> &'static [&'static str] {
    match subject {
        Subject::Sql => SQL_ROOTS,
        Subject::Git => GIT_ROOTS,
        Subject::Mask => MASK_ROOTS,
    }
}

pub fn is_root(name: &str) -> bool {
    [SQL_ROOTS, GIT_ROOTS, MASK_ROOTS]
        .iter()
        .any(|r| r.contains(&name))
}

/// Whether `path` (variables already replaced by the list they range over) is a fact of
/// `subject`.
pub fn knows(subject: Subject, path: &str) -> bool {
    let root = path.split('.').next().unwrap_or(path);
    if !roots(subject).contains(&root) {
        return false;
    }
    if COMMON_FACTS.contains(&path) {
        return true;
    }
    match subject {
        Subject::Sql => SQL_FACTS.contains(&path),
        Subject::Git => GIT_FACTS.contains(&path),
        Subject::Mask => MASK_FACTS.contains(&path),
    }
}

/// Whether a `sql` condition reads nothing but [`SQL_SHAPE_FACTS`], `agent` and `target`
/// (both fixed for a session).
pub fn shape_only(expr: &Expr) -> bool {
    match expr {
        Expr::Or(parts) | Expr::And(parts) => parts.iter().all(shape_only),
        Expr::Not(inner) => shape_only(inner),
        Expr::Test(operand) => operand_shape_only(operand),
        Expr::Compare(left, _, right) => operand_shape_only(left) && operand_shape_only(right),
        Expr::Quantified { list, body, .. } => operand_shape_only(list) && shape_only(body),
    }
}

fn operand_shape_only(operand: &Operand) -> bool {
    match operand {
        Operand::Literal(_) => true,
        Operand::Len(inner) => operand_shape_only(inner),
        Operand::Nested(expr) => shape_only(expr),
        Operand::Path(path) => match &path.base {
            // An item of the list it was bound from, whose path is checked there.
            PathBase::Var(_) => true,
            PathBase::Root(root) => match &**root {
                "agent" | "target" => true,
                "stmt" => path
                    .fields
                    .first()
                    .is_some_and(|f| SQL_SHAPE_FACTS.contains(&&**f)),
                _ => false,
            },
        },
    }
}
