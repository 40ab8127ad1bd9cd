//! The gateway's log as an operator reads it from a file or a pipe.

use crate::support::gateway::setup;

/// Issue #10: colour escapes belong on a terminal only; a log file gets plain text.
#[test]
fn issue_10_a_log_written_to_a_file_has_no_colour_escapes() {
    let (_pg, gw) = setup();
    let (ok, _, err) = gw.psql(&gw.token("alice", &["dev"]), &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
    let log = gw.log();
    assert!(
        log.contains("statement"),
        "the log records statements:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in a log file:\n{log}"
    );
}
