//! The inspect step: the pushed pack indexed into a quarantine (finished by the intake,
//! or read from the spooled file), then the history it adds walked into facts.

use std::path::{Path, PathBuf};

use super::intake::{self, Go, Intake};
use crate::git::Error;
use crate::git::http::Repo;
use crate::git::inspect::facts::{PushFacts, RefFacts};
use crate::git::inspect::history::{self, Hidden, InspectOptions, Update};
use crate::git::inspect::pack::Quarantine;
use crate::git::wire::request::Request;

/// The facts of every ref update, in order, and the indexed pack (for `apply =
/// "direct"`; it lives in the spool folder).
pub struct Inspected {
    pub facts: Vec<(RefFacts, PushFacts)>,
    pub pack: Option<PathBuf>,
}

/// The outer error is the body's (it could not be received); the inner one is the
/// push's: the pack could not be read ([`Error::is_unpack`]) or the push not judged.
pub async fn run(
    intake: Option<Intake>,
    repo: &Repo,
    request: &Request,
    spool: &Path,
) -> Result<Result<Inspected, Error>, Error> {
    let mirror = repo.upstream.mirror().to_path_buf();
    let quarantine_dir = spool.join("quarantine");
    let quarantine = match intake {
        Some(intake) => {
            intake
                .finish(Go {
                    mirror: mirror.clone(),
                    quarantine: quarantine_dir,
                })
                .await?
        }
        None if request.needs_pack() => {
            let (mirror, body, offset) = (mirror.clone(), spool.join("body"), request.pack_offset);
            tokio::task::spawn_blocking(move || {
                intake::index_file(&mirror, &quarantine_dir, &body, offset)
            })
            .await
            .map_err(std::io::Error::other)?
        }
        None => Ok(None),
    };
    let quarantine = match quarantine {
        Ok(q) => q,
        Err(e) => return Ok(Err(e)),
    };
    let pack = quarantine
        .as_ref()
        .and_then(|q| q.pack_path().map(Path::to_path_buf));
    let protected = repo.protected.clone();
    let request = request.clone();
    let facts = tokio::task::spawn_blocking(move || {
        walk(&mirror, quarantine.as_ref(), &request, &protected)
    })
    .await
    .map_err(std::io::Error::other)?;
    Ok(facts.map(|facts| Inspected { facts, pack }))
}

fn walk(
    mirror: &Path,
    quarantine: Option<&Quarantine>,
    request: &Request,
    protected: &crate::git::inspect::facts::Protected,
) -> Result<Vec<(RefFacts, PushFacts)>, Error> {
    let updates: Vec<Update> = request
        .commands
        .iter()
        .map(|c| Update::new(c.old, c.new, c.name.clone()))
        .collect();
    let options = InspectOptions {
        hidden: Hidden::AllRefs,
        ..InspectOptions::default()
    };
    let mut facts = history::inspect(mirror, quarantine, &updates, protected, &options)?;
    for (_, push) in &mut facts {
        push.set_options(request.options.clone());
        push.set_refs(request.commands.len());
    }
    Ok(facts)
}
