//! The pages in a real browser: `tests/browser/flows.mjs` drives Debian's Chromium through
//! playwright-core, with JavaScript off, against the real binary on its embedded defaults (the
//! quick start's demo app), its mail sent over SMTP to the test's sink. It signs up, signs out, signs in with a
//! password, follows a magic link, types a code, approves a device, chooses an organization and
//! sees an error page; every page is checked for labels, keyboard order and contrast, and
//! screenshotted into `target/tmp/browser-screenshots/`.

use std::path::Path;
use std::time::Duration;

use crate::support::binary::Binary;
use crate::support::smtp::SmtpSink;

#[tokio::test]
async fn a_browser_goes_through_every_page_without_javascript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/browser/flows.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (.ci/run does)"
    );
    assert!(Path::new("/usr/bin/chromium").is_file(), "Debian's chromium is required");
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    // Mail goes over SMTP to the sink; each message it receives is handed to the browser
    // script as a numbered .eml file (written whole, then renamed into place).
    let sink = SmtpSink::start().await;
    let relay = tokio::spawn({
        let (sink, mail) = (sink.clone(), mail.clone());
        async move {
            let mut written = 0;
            loop {
                for message in sink.messages().iter().skip(written) {
                    let partial = mail.join(format!("{written:04}.part"));
                    std::fs::write(&partial, &message.data).unwrap();
                    std::fs::rename(&partial, mail.join(format!("{written:04}.eml"))).unwrap();
                    written += 1;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let smtp_url = sink.url();
    let env = [
        ("PORTCULLIS_SERVER__LISTEN", "127.0.0.1:0"),
        ("PORTCULLIS_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("PORTCULLIS_EMAIL__TRANSPORT", "smtp"),
        ("PORTCULLIS_EMAIL__SMTP_URL", smtp_url.as_str()),
        ("PORTCULLIS_ORGS__REQUIRE_SELECTION", "true"),
    ];
    let portcullis = Binary::start(dir.path(), &[], &env).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASE_URL", &portcullis.url)
        .env("MAIL_DIR", &mail)
        .env("SHOTS_DIR", &shots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser flows took over 3 minutes")
        .expect("node is required");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser flows failed:\n{stdout}\n{stderr}\nPortcullis:\n{}",
        portcullis.log.lock()
    );
    relay.abort();
    assert!(stdout.contains("all browser flows passed"), "{stdout}");
    assert!(shots.join("07-choose-organization.png").is_file());
}
