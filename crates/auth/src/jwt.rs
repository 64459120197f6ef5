//! `oauth2_token` with `jwks`: signatures checked against the issuer's published keys. Keys are
//! cached, fetched again after `key_recheck_period`, and at once when a token names an unknown
//! `kid` (key rotation), but no more often than every `refresh_min_interval_seconds`, so a flood
//! of forged `kid`s cannot turn into a flood of requests to the identity server.

use std::time::Instant;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use llama_stack_core::Error;
use llama_stack_core::access::User;
use tokio::sync::Mutex;

use crate::config::OAuth2Config;

pub struct JwtVerifier {
    config: OAuth2Config,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    set: Option<JwkSet>,
    fetched: Option<Instant>,
}

fn invalid(why: &str) -> Error {
    Error::unauthorized(format!("Invalid JWT token: {why}"))
}

impl JwtVerifier {
    pub fn new(config: OAuth2Config, http: reqwest::Client) -> Self {
        JwtVerifier {
            config,
            http,
            keys: Mutex::new(Keys::default()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<User, Error> {
        // An `alg` outside the known set (`none` included) fails to parse here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("malformed token or unsupported alg"))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(invalid(&format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.config.audience]);
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                invalid(match e.kind() {
                    K::ExpiredSignature => "expired",
                    K::ImmatureSignature => "not valid yet",
                    K::InvalidAudience => "wrong audience",
                    K::InvalidIssuer => "wrong issuer",
                    K::InvalidSignature => "bad signature",
                    K::MissingRequiredClaim(_) => "a required claim (exp, sub, aud) is missing",
                    _ => "cannot be verified",
                })
            })?;
        let claims = data.claims;
        let principal = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("no sub claim"))?
            .to_string();
        let attributes = crate::attributes_from_claims(&claims, &self.config.claims_mapping);
        Ok(User {
            principal,
            attributes: Some(attributes),
        })
    }

    async fn key(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
    ) -> Result<DecodingKey, Error> {
        let mut keys = self.keys.lock().await;
        let (period, min_refresh) = self
            .config
            .jwks
            .as_ref()
            .map(|j| (j.key_recheck_period, j.min_refresh))
            .unwrap_or_default();
        let stale = keys.fetched.is_none_or(|at| at.elapsed() >= period);
        if stale {
            self.refresh(&mut keys).await?;
        }
        if let Some(key) = find(&keys, kid, alg) {
            return Ok(key);
        }
        // Unknown kid: the issuer may have rotated its keys.
        if keys.fetched.is_none_or(|at| at.elapsed() >= min_refresh) {
            self.refresh(&mut keys).await?;
            if let Some(key) = find(&keys, kid, alg) {
                return Ok(key);
            }
        }
        Err(invalid("signed by an unknown key"))
    }

    async fn refresh(&self, keys: &mut Keys) -> Result<(), Error> {
        let jwks = self
            .config
            .jwks
            .as_ref()
            .ok_or_else(|| Error::internal("no jwks configured"))?;
        let mut request = self.http.get(&jwks.uri);
        if let Some(token) = &jwks.token {
            request = request.bearer_auth(token);
        }
        // A failed fetch still counts as an attempt, so an unreachable issuer is not hammered.
        keys.fetched = Some(Instant::now());
        let fetched = async {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            response.json::<JwkSet>().await.map_err(|e| e.to_string())
        }
        .await;
        match fetched {
            Ok(set) => {
                keys.set = Some(set);
                Ok(())
            }
            Err(why) => {
                tracing::warn!(uri = %jwks.uri, error = %why, "Cannot fetch the JWKS");
                if keys.set.is_some() {
                    Ok(())
                } else {
                    Err(Error::unauthorized(
                        "Authentication service error: the signing keys cannot be fetched",
                    ))
                }
            }
        }
    }
}

fn find(keys: &Keys, kid: Option<&str>, alg: jsonwebtoken::Algorithm) -> Option<DecodingKey> {
    let set = keys.set.as_ref()?;
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        // Without a kid, only an unambiguous set will do.
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}
