//! An example CLI that signs in to a Portcullis-protected app with the device flow, keeps its
//! tokens, refreshes them when needed, and calls the app.
//!
//! ```sh
//! cargo run --example device_cli -- login            # shows a code; approve it in the browser
//! cargo run --example device_cli -- get /api/whoami  # calls the app with the access token
//! cargo run --example device_cli -- logout
//! ```
//! `PORTCULLIS_URL` (default `http://127.0.0.1:8080`) says where Portcullis is;
//! `TOKEN_FILE` (default `.portcullis-tokens.json`) where the tokens are kept.

mod client;

use std::path::PathBuf;

use client::DeviceClient;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let base = std::env::var("PORTCULLIS_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let file = std::env::var("TOKEN_FILE").unwrap_or_else(|_| ".portcullis-tokens.json".into());
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(error) => {
            eprintln!("device_cli: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let client = DeviceClient::new(http, &base, PathBuf::from(file));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["login"] => login(&client).await,
        ["get", path] => get(&client, path).await,
        ["logout"] => client.logout().await.map(|()| println!("signed out")),
        _ => Err("usage: device_cli login | get PATH | logout".into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("device_cli: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn login(client: &DeviceClient) -> Result<(), client::Error> {
    let started = client.start("device_cli example").await?;
    println!("Open {} and check the code {}", started.verification_uri_complete, started.user_code);
    println!(
        "(or go to {} and type it; the code expires in {} s)",
        started.verification_uri, started.expires_in
    );
    client.wait_for_tokens(&started, tokio::time::sleep).await?;
    println!("signed in");
    Ok(())
}

async fn get(client: &DeviceClient, path: &str) -> Result<(), client::Error> {
    let response = client.get(path).await?;
    println!("{}", response.status());
    println!("{}", response.text().await.map_err(|error| error.to_string())?);
    Ok(())
}
