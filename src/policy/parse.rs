//! Turns rule files into [`Rule`]s: the pest grammar in `grammars/rules.pest` gives the
//! syntax tree; this module checks it (known facts, valid regexes and globs, sane actions)
//! and compiles it, so evaluation never meets an error.

use std::time::Duration;

use pest::Parser as _;
use pest::error::LineColLocation;
use pest::iterators::Pair;

use super::error::{Error, Location};
use super::rule::{
    Action, Compare, Decision, Expr, MaskStrategy, Operand, Origin, Path, PathBase, RuleTest,
    Subject,
};
use super::schema;
use super::value::Literal;

#[derive(pest_derive::Parser)]
#[grammar = "../grammars/rules.pest"]
struct Grammar;

type GrammarRule = self::Rule;
use super::rule::Rule as PolicyRule;

/// Parses one rule file. `file` is only used to name locations in errors.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<PolicyRule>, Error> {
    let mut pairs = Grammar::parse(GrammarRule::file, text).map_err(|e| syntax_error(file, e))?;
    let file_pair = pairs
        .next()
        .expect("the grammar's top rule always yields one pair");
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for pair in file_pair.into_inner() {
        if pair.as_rule() != GrammarRule::rule {
            continue;
        }
        match build_rule(file, pair) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(rules),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

fn syntax_error(file: &str, e: pest::error::Error<GrammarRule>) -> Error {
    let (line, column) = match e.line_col {
        LineColLocation::Pos(p) | LineColLocation::Span(p, _) => p,
    };
    let e = e.renamed_rules(|r| describe(*r).to_string());
    let expected = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } if !positives.is_empty() => {
            let mut names: Vec<String> =
                positives.iter().map(|r| describe(*r).to_string()).collect();
            names.sort();
            names.dedup();
            format!("expected {}", names.join(", "))
        }
        other => other.message().to_string(),
    };
    Error::Syntax {
        at: Location {
            file: file.to_string(),
            line,
            column,
        },
        expected,
    }
}

/// Names grammar rules the way a rule author thinks of them.
fn describe(grammar_rule: GrammarRule) -> &'static str {
    use GrammarRule as G;
    match grammar_rule {
        G::EOI => "end of file",
        G::rule => "`rule <id> on <subject> { ... }`",
        G::rule_id => "a rule id",
        G::subject => "a subject (sql, git, mask)",
        G::monitor => "`monitor`",
        G::when => "`when <condition>`",
        G::unless => "`unless <condition>`",
        G::action | G::deny | G::review | G::allow | G::log | G::mask => {
            "an action (deny \"msg\", review \"msg\", allow, log, mask <strategy>)"
        }
        G::review_by => "`by \"group\"`",
        G::review_timeout => "`timeout <duration>`",
        G::strategy => "a mask strategy (redact, null, hash, partial, email)",
        G::test_case => "`test <decision> \"input\"`",
        G::decision => "a decision (allow, deny, review)",
        G::test_option | G::test_key => "a test option (sub, groups, target)",
        G::expr | G::conj | G::neg | G::predicate => "a condition",
        G::quantifier | G::quant_kind => "`any x in <list>: <condition>`",
        G::compare_op
        | G::in_op
        | G::not_in_op
        | G::intersects_op
        | G::contains_op
        | G::matches_op
        | G::glob_op => "an operator (==, !=, <, in, not in, intersects, contains, matches, glob)",
        G::or_op => "`or`",
        G::and_op => "`and`",
        G::not_op => "`not`",
        G::operand | G::call | G::path | G::list => "a value (fact path, literal or list)",
        G::string | G::string_inner => "a string",
        G::size => "a size",
        G::duration => "a duration",
        G::integer => "a number",
        G::boolean => "true or false",
        G::null => "null",
        G::ident | G::keyword => "a name",
        _ => "something else",
    }
}

fn location(file: &str, pair: &Pair<'_, GrammarRule>) -> Location {
    let (line, column) = pair.as_span().start_pos().line_col();
    Location {
        file: file.to_string(),
        line,
        column,
    }
}

struct Builder<'f> {
    file: &'f str,
    subject: Subject,
    /// Variables in scope: (name, the schema path of the list they range over).
    /// A variable's slot at run time is its depth in this list.
    scope: Vec<(String, String)>,
}

fn build_rule(file: &str, pair: Pair<'_, GrammarRule>) -> Result<PolicyRule, Error> {
    let origin = Origin {
        file: file.to_string(),
        line: pair.as_span().start_pos().line_col().0,
    };
    let source = pair.as_str().to_string();
    let mut inner = pair.into_inner();
    let id = inner.next().expect("grammar: rule id").as_str().to_string();
    let subject = match inner.next().expect("grammar: subject").as_str() {
        "sql" => Subject::Sql,
        "git" => Subject::Git,
        _ => Subject::Mask,
    };
    let mut b = Builder {
        file,
        subject,
        scope: Vec::new(),
    };
    let mut monitor = false;
    let mut when = None;
    let mut unless = None;
    let mut action = None;
    let mut tests = Vec::new();
    for part in inner {
        match part.as_rule() {
            GrammarRule::monitor => monitor = true,
            GrammarRule::when => when = Some(b.expr(only_child(part))?),
            GrammarRule::unless => unless = Some(b.expr(only_child(part))?),
            GrammarRule::action => action = Some(b.action(only_child(part))?),
            GrammarRule::test_case => tests.push(b.test_case(part)?),
            other => unreachable!("grammar: unexpected {other:?} in a rule"),
        }
    }
    let action = action.expect("grammar: every rule has an action");
    let at = Location {
        file: file.to_string(),
        line: origin.line,
        column: 1,
    };
    match (subject, &action) {
        (Subject::Mask, Action::Mask { .. } | Action::Allow | Action::Log) => {}
        (Subject::Mask, _) => {
            return Err(Error::Invalid {
                at,
                message: format!(
                    "rule {id}: mask rules take a mask strategy, not `{}`",
                    action.keyword()
                ),
            });
        }
        (_, Action::Mask { .. }) => {
            return Err(Error::Invalid {
                at,
                message: format!("rule {id}: `mask` is only for rules `on mask`"),
            });
        }
        _ => {}
    }
    if subject != Subject::Sql && !tests.is_empty() {
        return Err(Error::Invalid {
            at,
            message: format!(
                "rule {id}: inline tests are SQL statements, so only `on sql` rules carry them"
            ),
        });
    }
    Ok(PolicyRule {
        id,
        subject,
        monitor,
        when: when.expect("grammar: every rule has a condition"),
        unless,
        action,
        tests,
        origin,
        source,
    })
}

fn only_child(pair: Pair<'_, GrammarRule>) -> Pair<'_, GrammarRule> {
    pair.into_inner().next().expect("grammar: node has a child")
}

impl Builder<'_> {
    fn invalid(&self, pair: &Pair<'_, GrammarRule>, message: String) -> Error {
        Error::Invalid {
            at: location(self.file, pair),
            message,
        }
    }

    fn action(&self, pair: Pair<'_, GrammarRule>) -> Result<Action, Error> {
        Ok(match pair.as_rule() {
            GrammarRule::deny => Action::Deny {
                message: string_value(only_child(pair)),
            },
            GrammarRule::review => {
                let mut inner = pair.into_inner();
                let message = string_value(inner.next().expect("grammar: review message"));
                let mut by = None;
                let mut timeout = None;
                for part in inner {
                    match part.as_rule() {
                        GrammarRule::review_by => by = Some(string_value(only_child(part))),
                        _ => {
                            let d = only_child(part);
                            timeout = Some(duration_value(d.as_str()).ok_or_else(|| {
                                self.invalid(&d, format!("duration {} is out of range", d.as_str()))
                            })?);
                        }
                    }
                }
                Action::Review {
                    message,
                    by,
                    timeout,
                }
            }
            GrammarRule::allow => Action::Allow,
            GrammarRule::log => Action::Log,
            _ => {
                let strategy = match only_child(pair).as_str() {
                    "redact" => MaskStrategy::Redact,
                    "null" => MaskStrategy::Null,
                    "hash" => MaskStrategy::Hash,
                    "partial" => MaskStrategy::Partial,
                    _ => MaskStrategy::Email,
                };
                Action::Mask { strategy }
            }
        })
    }

    fn test_case(&self, pair: Pair<'_, GrammarRule>) -> Result<RuleTest, Error> {
        let line = pair.as_span().start_pos().line_col().0;
        let mut inner = pair.into_inner();
        let expect = Decision::parse(inner.next().expect("grammar: test decision").as_str())
            .expect("grammar: decision words");
        let input = string_value(inner.next().expect("grammar: test input"));
        let mut test = RuleTest {
            expect,
            input,
            sub: None,
            groups: None,
            target: None,
            line,
        };
        for option in inner {
            let mut kv = option.into_inner();
            let key = kv.next().expect("grammar: option key");
            let value = kv.next().expect("grammar: option value");
            let strings = match value.as_rule() {
                GrammarRule::string => vec![string_value(value)],
                _ => {
                    let mut out = Vec::new();
                    for item in value.into_inner() {
                        if item.as_rule() != GrammarRule::string {
                            return Err(self.invalid(&item, "test options take strings".into()));
                        }
                        out.push(string_value(item));
                    }
                    out
                }
            };
            match key.as_str() {
                "sub" => test.sub = strings.into_iter().next(),
                "groups" => test.groups = Some(strings),
                _ => test.target = strings.into_iter().next(),
            }
        }
        Ok(test)
    }

    fn expr(&mut self, pair: Pair<'_, GrammarRule>) -> Result<Expr, Error> {
        match pair.as_rule() {
            GrammarRule::expr | GrammarRule::conj => {
                let is_or = pair.as_rule() == GrammarRule::expr;
                let mut parts = Vec::new();
                for child in pair.into_inner() {
                    if matches!(child.as_rule(), GrammarRule::or_op | GrammarRule::and_op) {
                        continue;
                    }
                    parts.push(self.expr(child)?);
                }
                Ok(match (parts.len(), is_or) {
                    (1, _) => parts.pop().expect("one part"),
                    (_, true) => Expr::Or(parts),
                    (_, false) => Expr::And(parts),
                })
            }
            GrammarRule::neg => {
                let mut nots = 0;
                let mut body = None;
                for child in pair.into_inner() {
                    match child.as_rule() {
                        GrammarRule::not_op => nots += 1,
                        _ => body = Some(self.expr(child)?),
                    }
                }
                let mut e = body.expect("grammar: neg ends in a predicate");
                for _ in 0..nots {
                    e = Expr::Not(Box::new(e));
                }
                Ok(e)
            }
            GrammarRule::predicate => {
                let mut inner = pair.into_inner();
                let first = inner.next().expect("grammar: predicate body");
                if first.as_rule() == GrammarRule::quantifier {
                    return self.quantifier(first);
                }
                let left = self.operand(first)?;
                let Some(op) = inner.next() else {
                    return Ok(Expr::Test(left));
                };
                let right_pair = inner.next().expect("grammar: comparison has a right side");
                // Symbol operators have no inner pair; word operators have one.
                let op_pair = op.clone().into_inner().next().unwrap_or(op);
                let compare = match op_pair.as_rule() {
                    GrammarRule::matches_op | GrammarRule::glob_op => {
                        self.pattern(op_pair.as_rule() == GrammarRule::glob_op, right_pair)?
                    }
                    op_rule => {
                        let right = self.operand(right_pair)?;
                        let compare = match op_rule {
                            GrammarRule::in_op => Compare::In,
                            GrammarRule::not_in_op => Compare::NotIn,
                            GrammarRule::intersects_op => Compare::Intersects,
                            GrammarRule::contains_op => Compare::Contains,
                            _ => match op_pair.as_str() {
                                "==" => Compare::Eq,
                                "!=" => Compare::Ne,
                                "<" => Compare::Lt,
                                "<=" => Compare::Le,
                                ">" => Compare::Gt,
                                _ => Compare::Ge,
                            },
                        };
                        return Ok(Expr::Compare(left, compare, right));
                    }
                };
                Ok(Expr::Compare(
                    left,
                    compare,
                    Operand::Literal(Literal::Null),
                ))
            }
            other => unreachable!("grammar: {other:?} is not a condition"),
        }
    }

    /// `matches` and `glob` take a string or a list of strings, compiled now.
    fn pattern(&self, glob: bool, right: Pair<'_, GrammarRule>) -> Result<Compare, Error> {
        let literal = match right.as_rule() {
            GrammarRule::operand => right.clone().into_inner().next().expect("grammar: operand"),
            _ => right.clone(),
        };
        let patterns: Vec<String> = match literal.as_rule() {
            GrammarRule::string => vec![string_value(literal)],
            GrammarRule::list => literal
                .into_inner()
                .map(|p| match p.as_rule() {
                    GrammarRule::string => Ok(string_value(p)),
                    _ => Err(self.invalid(&p, "patterns must be strings".into())),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(self.invalid(
                    &right,
                    "`matches` and `glob` take a string or a list of strings".into(),
                ));
            }
        };
        if glob {
            let mut set = globset::GlobSetBuilder::new();
            for p in &patterns {
                let g = globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| self.invalid(&right, format!("bad glob {p:?}: {e}")))?;
                set.add(g);
            }
            let set = set
                .build()
                .map_err(|e| self.invalid(&right, format!("bad glob: {e}")))?;
            Ok(Compare::Glob(set))
        } else {
            let set = regex::RegexSet::new(&patterns)
                .map_err(|e| self.invalid(&right, format!("bad regex: {e}")))?;
            Ok(Compare::Matches(set))
        }
    }

    fn quantifier(&mut self, pair: Pair<'_, GrammarRule>) -> Result<Expr, Error> {
        let mut inner = pair.into_inner();
        let all = inner.next().expect("grammar: any/all").as_str() == "all";
        let var = inner.next().expect("grammar: variable");
        inner.next().expect("grammar: in");
        let list_pair = inner.next().expect("grammar: list");
        let list = self.operand(list_pair.clone())?;
        let element_path = match &list {
            Operand::Path(p) => self.schema_path(p),
            _ => String::new(),
        };
        if self.scope.iter().any(|(n, _)| n == var.as_str()) || schema::is_root(var.as_str()) {
            return Err(self.invalid(
                &var,
                format!("variable `{}` hides another name", var.as_str()),
            ));
        }
        let slot = self.scope.len();
        self.scope.push((var.as_str().to_string(), element_path));
        let body = self.expr(inner.next().expect("grammar: quantifier body"));
        self.scope.pop();
        Ok(Expr::Quantified {
            all,
            slot,
            list,
            body: Box::new(body?),
        })
    }

    fn operand(&mut self, pair: Pair<'_, GrammarRule>) -> Result<Operand, Error> {
        let pair = match pair.as_rule() {
            GrammarRule::operand => only_child(pair),
            _ => pair,
        };
        Ok(match pair.as_rule() {
            GrammarRule::path => Operand::Path(self.path(pair)?),
            GrammarRule::call => {
                let mut inner = pair.clone().into_inner();
                let name = inner.next().expect("grammar: function name");
                if name.as_str() != "len" {
                    return Err(self.invalid(
                        &name,
                        format!("unknown function `{}` (known: len)", name.as_str()),
                    ));
                }
                Operand::Len(Box::new(
                    self.operand(inner.next().expect("grammar: argument"))?,
                ))
            }
            GrammarRule::list => Operand::Literal(Literal::List(
                pair.into_inner()
                    .map(|p| self.literal(p))
                    .collect::<Result<_, _>>()?,
            )),
            GrammarRule::expr => Operand::Nested(Box::new(self.expr(pair)?)),
            _ => Operand::Literal(self.literal(pair)?),
        })
    }

    fn literal(&self, pair: Pair<'_, GrammarRule>) -> Result<Literal, Error> {
        let text = pair.as_str();
        Ok(match pair.as_rule() {
            GrammarRule::string => Literal::Str(string_value(pair)),
            GrammarRule::boolean => Literal::Bool(text == "true"),
            GrammarRule::null => Literal::Null,
            GrammarRule::integer => Literal::Int(
                text.parse()
                    .map_err(|_| self.invalid(&pair, format!("number {text} is out of range")))?,
            ),
            GrammarRule::size => Literal::Int(
                size_value(text)
                    .ok_or_else(|| self.invalid(&pair, format!("size {text} is out of range")))?,
            ),
            GrammarRule::duration => Literal::Int(
                duration_value(text)
                    .and_then(|d| i64::try_from(d.as_millis()).ok())
                    .ok_or_else(|| {
                        self.invalid(&pair, format!("duration {text} is out of range"))
                    })?,
            ),
            other => unreachable!("grammar: {other:?} is not a literal"),
        })
    }

    fn path(&self, pair: Pair<'_, GrammarRule>) -> Result<Path, Error> {
        let text = pair.as_str().to_string();
        let mut segments = pair.clone().into_inner().map(|p| p.as_str());
        let head = segments.next().expect("grammar: path has a head");
        let fields: Vec<Box<str>> = segments.map(Box::from).collect();
        let base = match self.scope.iter().rposition(|(n, _)| n == head) {
            Some(i) => PathBase::Var(i),
            None if schema::is_root(head) => PathBase::Root(head.into()),
            None => {
                return Err(self.invalid(&pair, format!(
                    "unknown name `{head}` (facts start with {}; or bind a variable with `any x in <list>:`)",
                    schema::roots(self.subject).join(", ")
                )));
            }
        };
        let path = Path { base, fields, text };
        let full = self.schema_path(&path);
        if !schema::knows(self.subject, &full) {
            return Err(self.invalid(
                &pair,
                format!(
                    "unknown fact `{full}` for `{}` rules",
                    self.subject.as_str()
                ),
            ));
        }
        Ok(path)
    }

    /// The path with any leading variable replaced by what it ranges over.
    fn schema_path(&self, path: &Path) -> String {
        let mut out = match &path.base {
            PathBase::Root(r) => r.to_string(),
            PathBase::Var(i) => self.scope[*i].1.clone(),
        };
        for f in &path.fields {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(f);
        }
        out
    }
}

/// Decodes a string literal's escapes (`\"`, `\\`, `\n`, `\t`; any other `\x` is `x`).
fn string_value(pair: Pair<'_, GrammarRule>) -> String {
    let raw = pair.into_inner().next().map_or("", |p| p.as_str());
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn size_value(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = text[..split].parse().ok()?;
    let unit: i64 = match &text[split..] {
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => 1 << 30,
    };
    n.checked_mul(unit)
}

/// `30s`, `10m`, `2h`, `1d`, `500ms`.
pub fn duration_value(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = text[..split].parse().ok()?;
    let ms = match &text[split..] {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }?;
    Some(Duration::from_millis(ms))
}
