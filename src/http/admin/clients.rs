//! Clients: list, show, create (the secret is returned once), update, rotate the
//! secret, delete. Clients declared in `[[clients]]` are rewritten from the config file
//! at every start, so the API refuses to change them (409 `managed_by_config`; the rule is
//! `clients::changeable`, which the CLI obeys too).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AdminError, AdminResult, json_body, json_response, plausible_id};
use crate::clients::{ClientError, ClientSpec, generate_secret, hash_secret, prepare};
use crate::http::AppState;
use crate::storage::{ClientRecord, unix_now};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/clients", get(list).post(create))
        .route(
            "/api/v1/admin/clients/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/v1/admin/clients/{id}/secret", post(rotate_secret))
}

/// A client as the admin API shows it (never its secret or the secret's hash).
fn client_json(c: &ClientRecord) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "token_endpoint_auth_method": c.token_endpoint_auth_method,
        "grant_types": c.grant_types,
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "scopes": c.scopes,
        "first_party": c.first_party,
        "introspect_any": c.introspect_any,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "source": c.source,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

fn client_error(e: ClientError) -> AdminError {
    match e {
        ClientError::Invalid(rule) => {
            let field = rule.field.split('[').next().unwrap_or_default().to_string();
            AdminError::Validation(
                [(field, format!("{}: allowed: {}", rule.value, rule.allowed))].into(),
            )
        }
        ClientError::Exists(id) => AdminError::Conflict(
            "client_exists",
            format!("A client with id {id:?} already exists."),
        ),
        ClientError::NotFound(_) => AdminError::NotFound,
        ClientError::ManagedByConfig(_) => AdminError::Conflict(
            "managed_by_config",
            "This client is declared in [[clients]] of the config file; change it there.".into(),
        ),
        ClientError::Store(e) => e.into(),
    }
}

async fn find(state: &AppState, id: &str) -> Result<ClientRecord, AdminError> {
    plausible_id(id)?;
    state
        .store
        .get_client(id)
        .await?
        .ok_or(AdminError::NotFound)
}

fn changeable(client: &ClientRecord) -> Result<(), AdminError> {
    crate::clients::changeable(client).map_err(client_error)
}

async fn list(_: Admin, State(state): State<AppState>) -> AdminResult {
    let clients = state.store.list_clients().await?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "items": clients.iter().map(client_json).collect::<Vec<_>>(), "next_cursor": null }),
    ))
}

async fn show(_: Admin, State(state): State<AppState>, Path(id): Path<String>) -> AdminResult {
    Ok(json_response(
        StatusCode::OK,
        client_json(&find(&state, &id).await?),
    ))
}

/// The `[[clients]]` keys as JSON (secrets are generated, never supplied).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    id: String,
    name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    first_party: bool,
    #[serde(default)]
    introspect_any: bool,
    #[serde(default)]
    scopes: Vec<String>,
    backchannel_logout_uri: Option<String>,
}

/// `client_secret_basic` (the default), `client_secret_post`, or `none` (public).
fn auth_method(method: Option<&str>) -> Result<(bool, &'static str), AdminError> {
    match method {
        None | Some("client_secret_basic") => Ok((false, "client_secret_basic")),
        Some("client_secret_post") => Ok((false, "client_secret_post")),
        Some("none") => Ok((true, "none")),
        Some(other) => Err(AdminError::invalid(
            "token_endpoint_auth_method",
            format!("{other:?}: allowed: client_secret_basic, client_secret_post, none"),
        )),
    }
}

/// `POST /api/v1/admin/clients`: the rules of `oxidp client add`; a confidential
/// client's secret is in the answer, once.
async fn create(
    admin: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AdminResult {
    let body: CreateBody = json_body(&headers, &body)?;
    let (public, method) = auth_method(body.token_endpoint_auth_method.as_deref())?;
    let spec = ClientSpec {
        id: body.id,
        name: body.name,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        grant_types: body.grant_types,
        public,
        first_party: body.first_party,
        introspect_any: body.introspect_any,
        scopes: body.scopes,
        backchannel_logout_uri: body.backchannel_logout_uri,
    };
    let (mut record, secret) = prepare(spec).map_err(client_error)?;
    record.token_endpoint_auth_method = method.to_string();
    record.source = "api".into();
    let stored = crate::clients::Clients::new(state.store.clone())
        .insert(&record)
        .await
        .map_err(client_error)?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.client.created")
            .subject(format!("client:{}", stored.id))
            .client(&stored.id)
            .detail("after", client_json(&stored)),
    );
    let mut answer = client_json(&stored);
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret.expose_secret());
    }
    Ok(json_response(StatusCode::CREATED, answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    first_party: Option<bool>,
    introspect_any: Option<bool>,
    scopes: Option<Vec<String>>,
    /// `""` removes it.
    backchannel_logout_uri: Option<String>,
}

/// `PATCH /api/v1/admin/clients/{id}`: the given fields replace the stored ones; the
/// result is validated as a whole, like a new client. The secret and the
/// authentication method stay.
async fn update(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> AdminResult {
    let body: UpdateBody = json_body(&headers, &body)?;
    let before = find(&state, &id).await?;
    changeable(&before)?;
    let spec = ClientSpec {
        id: before.id.clone(),
        name: body.name.or_else(|| before.name.clone()),
        redirect_uris: body
            .redirect_uris
            .unwrap_or_else(|| before.redirect_uris.clone()),
        post_logout_redirect_uris: body
            .post_logout_redirect_uris
            .unwrap_or_else(|| before.post_logout_redirect_uris.clone()),
        grant_types: body
            .grant_types
            .unwrap_or_else(|| before.grant_types.clone()),
        public: before.token_endpoint_auth_method == "none",
        first_party: body.first_party.unwrap_or(before.first_party),
        introspect_any: body.introspect_any.unwrap_or(before.introspect_any),
        scopes: body.scopes.unwrap_or_else(|| before.scopes.clone()),
        backchannel_logout_uri: match body.backchannel_logout_uri {
            Some(uri) if uri.is_empty() => None,
            Some(uri) => Some(uri),
            None => before.backchannel_logout_uri.clone(),
        },
    };
    // The freshly generated secret is dropped: an update keeps the stored one.
    let (mut record, _) = prepare(spec).map_err(client_error)?;
    record.secret_hash = before.secret_hash.clone();
    record.token_endpoint_auth_method = before.token_endpoint_auth_method.clone();
    record.source = before.source.clone();
    state.store.upsert_clients(&[record]).await?;
    state.clients.forget(&id);
    let after = find(&state, &id).await?;
    state.audit(
        &admin.audit,
        admin
            .event("admin.client.updated")
            .subject(format!("client:{id}"))
            .client(&id)
            .detail("before", client_json(&before))
            .detail("after", client_json(&after)),
    );
    Ok(json_response(StatusCode::OK, client_json(&after)))
}

/// `POST /api/v1/admin/clients/{id}/secret`: a new secret, returned once; the old one
/// stops working at once (on other instances within `database.client_cache_seconds`).
async fn rotate_secret(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult {
    let client = find(&state, &id).await?;
    changeable(&client)?;
    if client.token_endpoint_auth_method == "none" {
        return Err(AdminError::Conflict(
            "public_client",
            "A public client has no secret.".into(),
        ));
    }
    let secret = generate_secret();
    state
        .store
        .set_client_secret(&id, &hash_secret(secret.expose_secret()), unix_now())
        .await?;
    state.clients.forget(&id);
    state.audit(
        &admin.audit,
        admin
            .event("admin.client.secret_rotated")
            .subject(format!("client:{id}"))
            .client(&id),
    );
    Ok(json_response(
        StatusCode::OK,
        json!({"client_id": id, "client_secret": secret.expose_secret()}),
    ))
}

/// `DELETE /api/v1/admin/clients/{id}`: the client and everything issued to it.
async fn remove(
    admin: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult {
    plausible_id(&id)?;
    let before = crate::clients::Clients::new(state.store.clone())
        .remove(&id)
        .await
        .map_err(client_error)?;
    state.clients.forget(&id);
    state.audit(
        &admin.audit,
        admin
            .event("admin.client.deleted")
            .subject(format!("client:{id}"))
            .client(&id)
            .detail("before", client_json(&before)),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
