//! Issue #12: the approvers' page, in a real headless browser (Debian's chromium and
//! chromedriver, driven over WebDriver with fantoccini): an approver signs in with a
//! token, sees the held statement appear, approves it with a reason, and the agent's
//! psql finishes. `.ci/run` installs the browser; elsewhere the test says how to.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::support::gateway::{free_port, wait_listening};

/// chromedriver on a free port; killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver: {e}. The browser test needs Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver); .ci/run installs them"
            )
        });
    let driver = Driver(child, port);
    wait_listening(port, || "chromedriver did not start".into());
    driver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_approver_signs_in_on_the_page_and_approves_a_held_statement() {
    let (pg, gw, admin) =
        tokio::task::spawn_blocking(|| crate::approvals::start("hold = \"60s\"", None))
            .await
            .expect("setup");
    let driver = tokio::task::spawn_blocking(driver).await.expect("driver");

    let psql = gw.psql_in_background(
        &gw.token("alice", &["dev"]),
        &["-c", "CREATE TABLE from_the_page (id int)"],
    );

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,900"]
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a browser session");
    browser
        .goto(&format!("http://127.0.0.1:{admin}/approvals"))
        .await
        .expect("the page");
    browser
        .find(Locator::Id("token"))
        .await
        .expect("the sign-in box")
        .send_keys(&gw.token("dora", &["dba"]))
        .await
        .expect("type the token");
    browser
        .find(Locator::Id("signin"))
        .await
        .expect("sign in")
        .click()
        .await
        .expect("click");

    // The held statement appears (the page refreshes on its own).
    let deadline = Instant::now() + Duration::from_secs(30);
    let card = loop {
        if let Ok(card) = browser.find(Locator::Css("article.request.pending")).await
            && card.text().await.is_ok_and(|t| t.contains("from_the_page"))
        {
            break card;
        }
        assert!(
            Instant::now() < deadline,
            "no held request on the page\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = card.text().await.expect("text");
    assert!(text.contains("alice") && text.contains("sql.ddl"), "{text}");
    if let Ok(path) = std::env::var("PORTCULLIS_SCREENSHOT") {
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
    // The page redraws its list every 2 s (not while a reason is being typed), so a card
    // found a moment ago can be gone: type the reason and click in the card as it is now,
    // again if it was redrawn meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let approved = async {
            let card = browser
                .find(Locator::Css("article.request.pending"))
                .await?;
            card.find(Locator::Css("input.reason"))
                .await?
                .send_keys("looks fine")
                .await?;
            card.find(Locator::Css("button.approve"))
                .await?
                .click()
                .await
        }
        .await;
        match approved {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "could not approve: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (ok, _, err) = tokio::task::spawn_blocking(move || psql.join().expect("psql"))
        .await
        .expect("join");
    assert!(ok, "{err}");
    assert!(err.contains("approved by dora"), "{err}");
    let exists = tokio::task::spawn_blocking(move || {
        pg.query("SELECT to_regclass('from_the_page') IS NOT NULL")
    })
    .await
    .expect("query");
    assert_eq!(exists.trim(), "t");
    // The page shows the decision.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(done) = browser.find(Locator::Css("article.request.approved")).await
            && done
                .text()
                .await
                .is_ok_and(|t| t.contains("by dora: looks fine"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show the approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.close().await.expect("close");
}
