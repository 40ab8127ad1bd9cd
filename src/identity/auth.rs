//! Checking the token a client presents (the PostgreSQL password, the Git HTTP password or
//! bearer token, an approver's or auditor's bearer token), for every listener alike.

use std::future::Future;
use std::pin::Pin;

use super::{Identity, Verifier};

/// The identity behind a token, or `(message for the client, SQLSTATE)`; the message
/// never contains the token.
pub type AuthResult = Result<Identity, (String, &'static str)>;

/// What [`Authenticator::authenticate`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = AuthResult> + Send + 'a>>;

/// Checks a token. Asynchronous because a JWKS fetched by URL may need refetching,
/// which must not block a runtime thread.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// Tokens verified as JWTs against the configured issuer, audience and keys.
pub struct JwtAuth(pub Verifier);

impl Authenticator for JwtAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            self.0
                .verify_async(token)
                .await
                .map_err(|e| (e.to_string(), e.sqlstate()))
        })
    }
}
