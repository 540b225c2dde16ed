//! Loopback plays of the APIs that create what a push needs, each in front
//! of a real registry (`create_repositories`). No Harbor and no Google Cloud
//! run here, so each fake answers as the documentation says:
//!
//! - [`HarborFake`]: Harbor's API v2.0 project calls, as its swagger
//!   (`api/v2.0/swagger.yaml` of goharbor/harbor) defines them:
//!   `HEAD /api/v2.0/projects?project_name=` (200 exists, 404 not) and
//!   `POST /api/v2.0/projects` with a `ProjectReq` (201 created, 409 exists),
//!   basic auth; and Harbor's registry behind its token service
//!   (`/service/token`), which refuses a push into a project that does not
//!   exist with 401 "authentication required" (goharbor/harbor issues #890
//!   and #966: "users has to explicitly create a project first", #20544);
//! - [`ArtifactRegistryApi`]: the Artifact Registry API v1
//!   (`projects.locations.repositories.get` and `.create` with
//!   `repositoryId` and a `Repository` of `format: DOCKER`, answering a
//!   long-running `Operation` that `projects.locations.operations.get`
//!   reports `done`; errors as Google's `{"error": {code, message, status}}`),
//!   with the Bearer access tokens a `GoogleFake` issued; and a guard for
//!   the `GarFake` registry that refuses a push into a repository that does
//!   not exist as Artifact Registry does (403 `DENIED` "Permission
//!   \"artifactregistry.repositories.uploadArtifacts\" denied on resource
//!   … (or it may not exist)"). Image paths are
//!   `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`
//!   (cloud.google.com/artifact-registry/docs/docker/names).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::cloud_fakes::{
    Accept, AuthGate, GoogleFake, Guard, basic, bind, json_response, lock, query, random_token,
};

/// Whether `method` writes into a repository (blob uploads, manifest PUTs).
fn writes(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// The path components after `/v2/` of a registry request.
fn repo_path(path: &str) -> Vec<&str> {
    path.strip_prefix("/v2/")
        .map(|p| p.split('/').collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Harbor.

struct HarborState {
    /// User -> (password, may create projects).
    users: Mutex<HashMap<String, (String, bool)>>,
    projects: Mutex<HashSet<String>>,
    created: Mutex<Vec<Value>>,
    heads: AtomicUsize,
}

/// Harbor's project API and token-gated registry in front of a real registry.
pub struct HarborFake {
    state: Arc<HarborState>,
    /// The registry (and API) host.
    pub gate: AuthGate,
}

fn harbor_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        json!({"errors": [{"code": code, "message": message}]}),
    )
}

impl HarborFake {
    /// In front of `upstream_base_url`, with one user `user`:`password`.
    pub async fn start(upstream_base_url: &str, user: &str, password: &str) -> HarborFake {
        let users = HashMap::from([(user.to_string(), (password.to_string(), true))]);
        let state = Arc::new(HarborState {
            users: Mutex::new(users),
            projects: Mutex::new(HashSet::new()),
            created: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
        });
        let st = state.clone();
        let accept: Accept = Box::new(move |u, p| {
            harbor_user(&st, u, p).map(|_| Instant::now() + Duration::from_secs(1800))
        });
        let extra = Router::new()
            .route(
                "/api/v2.0/projects",
                axum::routing::head(harbor_head).post(harbor_post),
            )
            .with_state(state.clone());
        let gate = AuthGate::start(upstream_base_url, "/service/token", accept, extra).await;
        let st = state.clone();
        let guard: Guard = Arc::new(move |method, path| {
            let parts = repo_path(path);
            let project = parts.first()?;
            let missing = parts.len() > 2 && !lock(&st.projects).contains(*project);
            (writes(method) && missing).then(|| {
                harbor_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required",
                )
            })
        });
        gate.set_guard(guard);
        HarborFake { state, gate }
    }

    /// Add a user who may log in but not create projects (Harbor's
    /// `project_creation_restriction = adminonly`: 403 to others).
    pub fn add_user_without_project_creation(&self, user: &str, password: &str) {
        lock(&self.state.users).insert(user.into(), (password.into(), false));
    }

    /// Projects created through the API so far: the `ProjectReq` bodies.
    pub fn created(&self) -> Vec<Value> {
        lock(&self.state.created).clone()
    }

    /// `HEAD /api/v2.0/projects` calls so far.
    pub fn heads(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }
}

/// `Some(may create projects)` for a known user and password.
fn harbor_user(st: &HarborState, user: &str, password: &str) -> Option<bool> {
    lock(&st.users)
        .get(user)
        .filter(|(p, _)| p == password)
        .map(|(_, may_create)| *may_create)
}

fn harbor_user_of(st: &HarborState, headers: &HeaderMap) -> Option<bool> {
    basic(headers).and_then(|(u, p)| harbor_user(st, &u, &p))
}

async fn harbor_head(State(st): State<Arc<HarborState>>, req: Request) -> Response {
    st.heads.fetch_add(1, Ordering::SeqCst);
    if harbor_user_of(&st, req.headers()).is_none() {
        return harbor_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized");
    }
    let name = query(&req).get("project_name").cloned().unwrap_or_default();
    let status = if lock(&st.projects).contains(&name) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    Response::builder()
        .status(status)
        .body(axum::body::Body::empty())
        .expect("static response parts are valid")
}

async fn harbor_post(State(st): State<Arc<HarborState>>, req: Request) -> Response {
    match harbor_user_of(&st, req.headers()) {
        None => return harbor_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "unauthorized"),
        Some(false) => {
            return harbor_error(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "Only system admin can create project",
            );
        }
        Some(true) => {}
    }
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return harbor_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "invalid JSON");
    };
    let Some(name) = body.get("project_name").and_then(Value::as_str) else {
        return harbor_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "project_name required",
        );
    };
    if !lock(&st.projects).insert(name.to_string()) {
        return harbor_error(
            StatusCode::CONFLICT,
            "CONFLICT",
            &format!("The project named {name} already exists"),
        );
    }
    lock(&st.created).push(body.clone());
    let id = lock(&st.created).len();
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/api/v2.0/projects/{id}"))
        .body(axum::body::Body::empty())
        .expect("static response parts are valid")
}

// ---------------------------------------------------------------------------
// Artifact Registry API v1.

type TokenCheck = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct ArState {
    location: String,
    token_ok: TokenCheck,
    /// `PROJECT/REPOSITORY` of existing repositories.
    repositories: Mutex<HashSet<String>>,
    /// Unfinished creations: operation name -> (`PROJECT/REPOSITORY`, body).
    operations: Mutex<HashMap<String, (String, Value)>>,
    /// Finished creations, with the `Repository` body sent.
    created: Mutex<Vec<(String, Value)>>,
    gets: AtomicUsize,
}

/// The Artifact Registry API of one location on loopback.
pub struct ArtifactRegistryApi {
    state: Arc<ArState>,
    base: String,
    _shutdown: oneshot::Sender<()>,
}

fn google_error(status: StatusCode, message: &str, code: &str) -> Response {
    json_response(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": code}}),
    )
}

impl ArtifactRegistryApi {
    /// The API of `location`, taking the access tokens `google` issued.
    pub async fn start(location: &str, google: &GoogleFake) -> ArtifactRegistryApi {
        let state = Arc::new(ArState {
            location: location.into(),
            token_ok: Box::new(google.token_checker()),
            repositories: Mutex::new(HashSet::new()),
            operations: Mutex::new(HashMap::new()),
            created: Mutex::new(Vec::new()),
            gets: AtomicUsize::new(0),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(ar_api).with_state(state.clone());
        ArtifactRegistryApi {
            state,
            base: format!("http://{addr}"),
            _shutdown: super::serve_until_dropped(listener, router),
        }
    }

    /// `http://127.0.0.1:PORT`, for `CLOUDSDK_API_ENDPOINT_OVERRIDES_ARTIFACTREGISTRY`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Repositories created so far: `PROJECT/REPOSITORY` and the body sent.
    pub fn created(&self) -> Vec<(String, Value)> {
        lock(&self.state.created).clone()
    }

    /// `repositories.get` calls so far.
    pub fn gets(&self) -> usize {
        self.state.gets.load(Ordering::SeqCst)
    }

    /// A guard for the `GarFake` registry of this location: pushes into a
    /// repository that does not exist are denied.
    pub fn registry_guard(&self) -> Guard {
        let st = self.state.clone();
        Arc::new(move |method, path| {
            let parts = repo_path(path);
            if !writes(method) || parts.len() < 4 {
                return None;
            }
            let unit = format!("{}/{}", parts[0], parts[1]);
            if lock(&st.repositories).contains(&unit) {
                return None;
            }
            Some(json_response(
                StatusCode::FORBIDDEN,
                json!({"errors": [{"code": "DENIED", "message": format!(
                    "Permission \"artifactregistry.repositories.uploadArtifacts\" denied on \
                     resource \"projects/{}/locations/{}/repositories/{}\" (or it may not exist)",
                    parts[0], st.location, parts[1]
                )}]}),
            ))
        })
    }
}

async fn ar_api(State(st): State<Arc<ArState>>, req: Request) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if !(st.token_ok)(&token) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
            "UNAUTHENTICATED",
        );
    }
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // v1 / projects / P / locations / L / (repositories|operations) [/ ID]
    let shape = parts.len() >= 6
        && parts[0] == "v1"
        && parts[1] == "projects"
        && parts[3] == "locations"
        && parts[4] == st.location;
    if !shape {
        return google_error(StatusCode::NOT_FOUND, "Not found.", "NOT_FOUND");
    }
    let project = parts[2].to_string();
    match (req.method().clone(), parts[5], parts.get(6).copied()) {
        (Method::GET, "repositories", Some(r)) => {
            st.gets.fetch_add(1, Ordering::SeqCst);
            get_repository(&st, &project, r)
        }
        (Method::POST, "repositories", None) => create_repository(&st, &project, req).await,
        (Method::GET, "operations", Some(_)) => finish_operation(&st, &path),
        _ => google_error(StatusCode::NOT_FOUND, "Not found.", "NOT_FOUND"),
    }
}

fn repository_json(st: &ArState, project: &str, repository: &str) -> Value {
    json!({
        "name": format!("projects/{project}/locations/{}/repositories/{repository}", st.location),
        "format": "DOCKER",
    })
}

fn get_repository(st: &ArState, project: &str, repository: &str) -> Response {
    if lock(&st.repositories).contains(&format!("{project}/{repository}")) {
        json_response(StatusCode::OK, repository_json(st, project, repository))
    } else {
        google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
            "NOT_FOUND",
        )
    }
}

async fn create_repository(st: &ArState, project: &str, req: Request) -> Response {
    let id = query(&req).get("repositoryId").cloned().unwrap_or_default();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if id.is_empty() || body.get("format").and_then(Value::as_str) != Some("DOCKER") {
        return google_error(
            StatusCode::BAD_REQUEST,
            "repositoryId and a format are required",
            "INVALID_ARGUMENT",
        );
    }
    let unit = format!("{project}/{id}");
    let pending = lock(&st.operations).values().any(|(u, _)| *u == unit);
    if pending || lock(&st.repositories).contains(&unit) {
        return google_error(
            StatusCode::CONFLICT,
            "the repository already exists",
            "ALREADY_EXISTS",
        );
    }
    let name = format!(
        "projects/{project}/locations/{}/operations/{}",
        st.location,
        random_token("op-")
    );
    lock(&st.operations).insert(name.clone(), (unit, body));
    json_response(StatusCode::OK, json!({"name": name}))
}

/// The first look at an operation finds it done: the repository exists.
fn finish_operation(st: &ArState, path: &str) -> Response {
    let name = path.trim_start_matches("/v1/").to_string();
    let Some((unit, body)) = lock(&st.operations).remove(&name) else {
        return google_error(StatusCode::NOT_FOUND, "no such operation", "NOT_FOUND");
    };
    lock(&st.repositories).insert(unit.clone());
    lock(&st.created).push((unit.clone(), body));
    let (project, repository) = unit.split_once('/').unwrap_or_default();
    json_response(
        StatusCode::OK,
        json!({"name": name, "done": true, "response": repository_json(st, project, repository)}),
    )
}
