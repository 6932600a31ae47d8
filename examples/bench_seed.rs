//! Seeds a database for the benchmarks: `count` users with one session each (cookie values are
//! written one per line to `out`), an API key for the first user (written to `out.api_key`),
//! plus `storm@example.com` with a password for login storms and token logins.
//! Sessions are created directly through the library, without hashing a password per user.
//!
//! ```sh
//! cargo run --release --example bench_seed -- sqlite:///tmp/bench.db 10000 cookies.txt
//! ```

use std::io::Write;
use std::sync::Arc;

use portcullis::testing::clock::{Clock, SystemClock};
use portcullis::testing::config::Config;
use portcullis::testing::crypto::password::PasswordHasherPool;
use portcullis::testing::identity::api_key::KeyRequest;
use portcullis::testing::identity::session::ClientInfo;
use portcullis::testing::identity::{Email, Scopes};
use portcullis::testing::services::Services;
use portcullis::testing::store::users::NewUser;

/// The password of `storm@example.com`.
const STORM_PASSWORD: &str = "correct horse battery staple";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(database_url), Some(count), Some(out)) = (args.next(), args.next(), args.next())
    else {
        return Err("usage: bench_seed DATABASE_URL COUNT COOKIES_FILE".into());
    };
    let count: usize = count.parse()?;
    let mut raw = portcullis::testing::config::RawConfig::default();
    raw.storage.database_url = database_url;
    let config = Config::try_from(raw)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stores = Services::open(&config, Arc::clone(&clock)).await?;

    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for index in 0..count {
        let email = Email::parse(&format!("user{index}@bench.example"))?;
        let new = NewUser {
            email,
            name: Some(format!("User {index}")),
            password_hash: None,
            roles: vec!["member".into()],
        };
        let user = stores.users.create(new, clock.now()).await?;
        let (token, _) = stores.sessions.create(&user, ClientInfo::default(), None).await?;
        writeln!(file, "{}", token.cookie_value())?;
    }
    file.flush()?;
    if let Some((first, _)) =
        stores.users.find_by_email(&Email::parse("user0@bench.example")?).await?
    {
        let request = KeyRequest {
            name: "bench",
            scopes: Scopes::parse_list([])?,
            expires_in_days: None,
            org_id: None,
        };
        let key = stores.api_keys.create(first.id, request).await?;
        std::fs::write(format!("{out}.api_key"), key.secret)?;
    }

    let hash = PasswordHasherPool::new(1)?.hash(STORM_PASSWORD.to_owned()).await?;
    let storm = NewUser {
        email: Email::parse("storm@example.com")?,
        name: None,
        password_hash: Some(hash),
        roles: Vec::new(),
    };
    stores.users.create(storm, clock.now()).await?;
    eprintln!("seeded {count} sessions into {out}");
    Ok(())
}
