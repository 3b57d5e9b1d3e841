//! Calls inside one Incus project: profiles, images, image aliases, instances, exec, files.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::api;
use crate::client::IncusClient;
use crate::error::{Error, Result};
use crate::transport::Transport;
use crate::types::{
    Devices, ExecOutput, ExecRequest, FileMode, Image, ImageAlias, ImageImport, Instance,
    InstanceCreate, InstanceState, InstanceType, Operation, Profile,
};

/// How often, and how far apart, a removal retries a stop that another operation holds up.
const BUSY_RETRIES: u32 = 50;
const BUSY_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// The calls inside one project, from [`IncusClient::in_project`]. Cheap to clone.
///
/// Every error names its object as `<kind> <project>/<name>` (`instance pika-test-x/c1`).
#[derive(Debug, Clone)]
pub struct ProjectClient {
    client: IncusClient,
    project: Arc<str>,
}

impl IncusClient {
    /// The calls inside project `project`.
    pub fn in_project(&self, project: impl Into<String>) -> ProjectClient {
        ProjectClient {
            client: self.clone(),
            project: project.into().into(),
        }
    }
}

impl ProjectClient {
    fn transport(&self) -> &Transport {
        self.client.transport()
    }

    /// The project name.
    pub fn name(&self) -> &str {
        &self.project
    }

    /// The connection, for server-wide calls.
    pub fn client(&self) -> &IncusClient {
        &self.client
    }

    fn what(&self, kind: &str, name: &str) -> String {
        format!("{kind} {}/{name}", self.project)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut full = Vec::with_capacity(query.len() + 1);
        full.push((api::Q_PROJECT, &*self.project));
        full.extend_from_slice(query);
        self.transport().request(method, path, &full)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        self.transport()
            .expect_sync(what, self.request(Method::GET, path, query))
            .await
    }

    async fn sync(&self, what: &str, request: reqwest::RequestBuilder) -> Result<()> {
        self.transport()
            .expect_sync::<Value>(what, request)
            .await
            .map(drop)
    }

    async fn operation(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Operation> {
        let timeout = self.client.operation_timeout();
        self.transport()
            .run_operation(what, request, Some(&self.project), timeout)
            .await
    }

    /// Deletes the project's instances (force-stopping running ones) and images (their aliases
    /// go with them), then the project itself. For throwaway projects, such as tests use; a
    /// project with other contents (own profiles, volumes) is refused by Incus at the last step.
    pub async fn delete_with_contents(&self) -> Result<()> {
        for instance in self.list_instances().await? {
            if instance.is_running() {
                self.stop_instance(&instance.name, true).await?;
            }
            self.delete_instance(&instance.name).await?;
        }
        for image in self.list_images().await? {
            self.delete_image(&image.fingerprint).await?;
        }
        self.client.delete_project(&self.project).await
    }

    // ---- profiles ----------------------------------------------------------------------------

    pub async fn get_profile(&self, name: &str) -> Result<Profile> {
        self.get(
            &self.what("profile", name),
            &api::item(api::PROFILES, name),
            &[],
        )
        .await
    }

    // ---- images ------------------------------------------------------------------------------

    pub async fn list_images(&self) -> Result<Vec<Image>> {
        self.get(
            &self.what("images", "*"),
            api::IMAGES,
            &[(api::Q_RECURSION, "1")],
        )
        .await
    }

    pub async fn get_image(&self, fingerprint: &str) -> Result<Image> {
        self.get(
            &self.what("image", fingerprint),
            &api::item(api::IMAGES, fingerprint),
            &[],
        )
        .await
    }

    pub async fn delete_image(&self, fingerprint: &str) -> Result<()> {
        let what = self.what("image", fingerprint);
        self.operation(
            &what,
            self.request(Method::DELETE, &api::item(api::IMAGES, fingerprint), &[]),
        )
        .await
        .map(drop)
    }

    /// Uploads a split image (metadata tarball + rootfs or disk, streamed as multipart), then
    /// creates its aliases. Returns the image as Incus recorded it. An image with the same
    /// fingerprint already in the project fails the operation.
    pub async fn import_image(&self, import: &ImageImport) -> Result<Image> {
        let what = self.what("image import", &file_name(&import.rootfs));
        let rootfs_field = match import.image_type {
            InstanceType::Container => api::PART_ROOTFS_CONTAINER,
            InstanceType::VirtualMachine => api::PART_ROOTFS_VM,
        };
        let form = file_form(
            &what,
            &[
                (api::PART_METADATA, &import.metadata),
                (rootfs_field, &import.rootfs),
            ],
        )
        .await?;
        let properties: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&import.properties)
            .finish();
        let mut request = self
            .request(Method::POST, api::IMAGES, &[])
            .timeout(self.client.operation_timeout())
            .multipart(form)
            .header(api::H_PUBLIC, if import.public { "true" } else { "false" })
            .header(api::H_FILENAME, file_name(&import.rootfs));
        if !properties.is_empty() {
            request = request.header(api::H_PROPERTIES, properties);
        }
        if !import.upload_aliases.is_empty() {
            let aliases: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(import.upload_aliases.iter().map(|alias| ("alias", alias)))
                .finish();
            request = request.header(api::H_ALIASES, aliases);
        }
        let operation = self.operation(&what, request).await?;
        let fingerprint = operation
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get("fingerprint"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::protocol(&what, "the finished import names no fingerprint"))?
            .to_string();
        for alias in &import.aliases {
            self.create_image_alias(alias, &fingerprint, "").await?;
        }
        self.get_image(&fingerprint).await
    }

    // ---- image aliases -----------------------------------------------------------------------

    /// Every image alias of the project with its target.
    pub async fn list_image_aliases(&self) -> Result<Vec<ImageAlias>> {
        self.get(
            &self.what("image aliases", "*"),
            api::IMAGE_ALIASES,
            &[(api::Q_RECURSION, "1")],
        )
        .await
    }

    pub async fn get_image_alias(&self, name: &str) -> Result<ImageAlias> {
        self.get(
            &self.what("image alias", name),
            &api::item(api::IMAGE_ALIASES, name),
            &[],
        )
        .await
    }

    /// Points the new alias `name` at image `fingerprint`; an existing alias is a conflict.
    pub async fn create_image_alias(
        &self,
        name: &str,
        fingerprint: &str,
        description: &str,
    ) -> Result<()> {
        let body = json!({ "name": name, "target": fingerprint, "description": description });
        self.sync(
            &self.what("image alias", name),
            self.request(Method::POST, api::IMAGE_ALIASES, &[])
                .json(&body),
        )
        .await
    }

    /// Points the existing alias `name` at image `fingerprint`, in one request (`PATCH`), so
    /// instances created from the alias switch images atomically.
    pub async fn retarget_image_alias(&self, name: &str, fingerprint: &str) -> Result<()> {
        let request = self
            .request(Method::PATCH, &api::item(api::IMAGE_ALIASES, name), &[])
            .json(&json!({ "target": fingerprint }));
        self.sync(&self.what("image alias", name), request).await
    }

    pub async fn delete_image_alias(&self, name: &str) -> Result<()> {
        let request = self.request(Method::DELETE, &api::item(api::IMAGE_ALIASES, name), &[]);
        self.sync(&self.what("image alias", name), request).await
    }

    // ---- operations --------------------------------------------------------------------------

    /// The operations of this project that are still running (e.g. a create whose client went
    /// away); wait for one with [`IncusClient::wait_operation`].
    pub async fn running_operations(&self) -> Result<Vec<Operation>> {
        // A cluster answers `null` when no member has an operation.
        let by_status: Option<std::collections::BTreeMap<String, Option<Vec<Operation>>>> = self
            .get(
                &self.what("operations", "*"),
                api::OPERATIONS,
                &[(api::Q_RECURSION, "1")],
            )
            .await?;
        Ok(by_status
            .and_then(|mut by_status| by_status.remove("running").flatten())
            .unwrap_or_default())
    }

    // ---- instances ---------------------------------------------------------------------------

    /// Creates (and, with [`InstanceCreate::start`], starts) an instance from an image alias of
    /// this project; waits for the operation.
    pub async fn create_instance(&self, create: &InstanceCreate) -> Result<()> {
        let what = self.what("instance", &create.name);
        let mut body = json!({
            "name": create.name,
            "type": create.instance_type,
            "source": { "type": "image", "alias": create.alias },
            "config": create.config,
            "devices": create.devices,
            "description": create.description,
            "ephemeral": create.ephemeral,
            "start": create.start,
        });
        if let Some(profiles) = &create.profiles {
            body["profiles"] = json!(profiles);
        }
        let target = create.target.as_deref().unwrap_or_default();
        let request = self
            .request(Method::POST, api::INSTANCES, &[(api::Q_TARGET, target)])
            .json(&body);
        self.operation(&what, request).await.map(drop)
    }

    /// Adds or replaces devices of an instance (`PATCH`: the instance's other devices and its
    /// config stay). On a running container Incus applies the change live (a proxy device moves
    /// to its new listen address); Incus refuses a change it cannot apply, and nothing changes.
    pub async fn update_instance_devices(&self, name: &str, devices: &Devices) -> Result<()> {
        let request = self
            .request(Method::PATCH, &api::item(api::INSTANCES, name), &[])
            .json(&json!({ "devices": devices }));
        self.sync(&self.what("instance", name), request).await
    }

    /// Sets (merges) `config` keys of an instance in place (`PATCH`); a running instance keeps
    /// running. An empty value removes the key.
    pub async fn patch_instance_config(
        &self,
        name: &str,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let what = self.what("instance", name);
        let request = self
            .request(Method::PATCH, &api::item(api::INSTANCES, name), &[])
            .json(&json!({ "config": config }));
        self.operation(&what, request).await.map(drop)
    }

    pub async fn get_instance(&self, name: &str) -> Result<Instance> {
        self.get(
            &self.what("instance", name),
            &api::item(api::INSTANCES, name),
            &[],
        )
        .await
    }

    /// Every instance of the project with its config (`user.*` keys included).
    pub async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.get(
            &self.what("instances", "*"),
            api::INSTANCES,
            &[(api::Q_RECURSION, "1")],
        )
        .await
    }

    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.get(
            &self.what("instance", name),
            &api::instance_sub(name, "state"),
            &[],
        )
        .await
    }

    pub async fn start_instance(&self, name: &str) -> Result<()> {
        self.change_state(name, json!({ "action": "start" })).await
    }

    /// Stops an instance: `force` kills it at once, otherwise it gets the operation timeout to
    /// shut down cleanly.
    pub async fn stop_instance(&self, name: &str, force: bool) -> Result<()> {
        let grace = self.client.operation_timeout().as_secs().max(1);
        self.change_state(
            name,
            json!({ "action": "stop", "force": force, "timeout": grace }),
        )
        .await
    }

    async fn change_state(&self, name: &str, body: Value) -> Result<()> {
        let request = self
            .request(Method::PUT, &api::instance_sub(name, "state"), &[])
            .json(&body);
        self.operation(&self.what("instance", name), request)
            .await
            .map(drop)
    }

    /// Deletes a stopped instance (Incus refuses a running one: stop it first).
    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        let request = self.request(Method::DELETE, &api::item(api::INSTANCES, name), &[]);
        self.operation(&self.what("instance", name), request)
            .await
            .map(drop)
    }

    /// Deletes instance `name` in whatever state it is: a running one is force-stopped first (an
    /// ephemeral one goes with the stop), one that is not there counts as removed. What every
    /// launcher's cleanup needs, so it lives here once.
    pub async fn remove_instance(&self, name: &str) -> Result<()> {
        let instance = match self.get_instance(name).await {
            Ok(instance) => instance,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if instance.status != "Stopped" {
            // A change another client left running (a device add: Incus waits up to a second for
            // a proxy device's forkproxy) holds the instance; the stop is refused until it ends.
            for attempt in 1..=BUSY_RETRIES {
                match self.stop_instance(name, true).await {
                    Ok(()) => break,
                    Err(e) if e.is_not_found() => return Ok(()),
                    Err(e) if e.is_busy() && attempt < BUSY_RETRIES => {
                        tokio::time::sleep(BUSY_RETRY_DELAY).await;
                    }
                    // It may have stopped on its own meanwhile; the delete decides.
                    Err(e) => {
                        tracing::debug!("stopping {}: {e}", self.what("instance", name));
                        break;
                    }
                }
            }
        }
        match self.delete_instance(name).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Runs a command with its output recorded by Incus (no websocket), waits for it, and returns
    /// its exit code, stdout and stderr. The recorded log files are removed afterwards.
    pub async fn exec(&self, instance: &str, exec: &ExecRequest) -> Result<ExecOutput> {
        let what = self.what("exec in instance", instance);
        let mut body = json!({
            "command": exec.command,
            "environment": exec.environment,
            "interactive": false,
            "wait-for-websocket": false,
            "record-output": true,
        });
        if let Some(cwd) = &exec.cwd {
            body["cwd"] = json!(cwd);
        }
        if let Some(user) = exec.user {
            body["user"] = json!(user);
        }
        if let Some(group) = exec.group {
            body["group"] = json!(group);
        }
        let timeout = exec.timeout.unwrap_or(self.client.operation_timeout());
        let request = self
            .request(Method::POST, &api::instance_sub(instance, "exec"), &[])
            .json(&body);
        let operation = self
            .transport()
            .run_operation(&what, request, Some(&self.project), timeout)
            .await?;
        let metadata = operation.metadata.unwrap_or_default();
        let exit_code = metadata
            .get("return")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                Error::protocol(
                    &what,
                    "the finished exec has no exit code (metadata.return)",
                )
            })?;
        let log = |fd: &str| {
            metadata
                .get("output")
                .and_then(|output| output.get(fd))
                .and_then(Value::as_str)
        };
        let exit_code = i32::try_from(exit_code).map_err(|_| {
            Error::protocol(&what, format!("exit code {exit_code} is out of range"))
        })?;
        let mut output = ExecOutput {
            exit_code,
            ..ExecOutput::default()
        };
        for (fd, sink) in [("1", &mut output.stdout), ("2", &mut output.stderr)] {
            let Some(path) = log(fd) else { continue };
            let response = self
                .transport()
                .send(&what, self.request(Method::GET, path, &[]))
                .await?;
            *sink = response
                .bytes()
                .await
                .map_err(|e| self.transport().transport(&what, e, self.client.timeout()))?
                .to_vec();
            // The logs are ours alone; a failed cleanup is not the caller's problem.
            if let Err(e) = self
                .transport()
                .send(&what, self.request(Method::DELETE, path, &[]))
                .await
            {
                tracing::debug!(error = %e, "could not remove an exec log");
            }
        }
        Ok(output)
    }

    // ---- files -------------------------------------------------------------------------------

    /// Writes `contents` to `path` in the instance (replacing any file there) with owner and mode.
    pub async fn push_file(
        &self,
        instance: &str,
        path: &str,
        contents: impl Into<Bytes>,
        mode: FileMode,
    ) -> Result<()> {
        let request = self
            .file_request(instance, path, mode, "file")
            .header(api::H_WRITE, "overwrite")
            .body(contents.into());
        self.sync(&self.what("file", &format!("{instance}:{path}")), request)
            .await
    }

    /// Creates the directory `path` in the instance with owner and mode (its parent must exist);
    /// an existing directory is left as it is.
    pub async fn create_dir(&self, instance: &str, path: &str, mode: FileMode) -> Result<()> {
        let request = self.file_request(instance, path, mode, "directory");
        self.sync(
            &self.what("directory", &format!("{instance}:{path}")),
            request,
        )
        .await
    }

    /// A POST to the instance's files API for `path` with owner, mode and entry type (`file` or
    /// `directory`).
    fn file_request(
        &self,
        instance: &str,
        path: &str,
        mode: FileMode,
        kind: &str,
    ) -> reqwest::RequestBuilder {
        self.request(
            Method::POST,
            &api::instance_sub(instance, "files"),
            &[(api::Q_PATH, path)],
        )
        .header(api::H_UID, mode.uid)
        .header(api::H_GID, mode.gid)
        .header(api::H_MODE, format!("{:04o}", mode.mode))
        .header(api::H_TYPE, kind)
    }

    /// Reads the file at `path` in the instance.
    pub async fn pull_file(&self, instance: &str, path: &str) -> Result<Vec<u8>> {
        let what = self.what("file", &format!("{instance}:{path}"));
        let request = self.request(
            Method::GET,
            &api::instance_sub(instance, "files"),
            &[(api::Q_PATH, path)],
        );
        let response = self.transport().send(&what, request).await?;
        let kind = response
            .headers()
            .get(api::H_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("file");
        if kind != "file" {
            return Err(Error::protocol(&what, format!("is a {kind}, not a file")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport().transport(&what, e, self.client.timeout()))?;
        Ok(bytes.to_vec())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().replace(['"', '\r', '\n'], "_"))
        .unwrap_or_default()
}

/// A `multipart/form-data` form of whole files, streamed from disk (images can be gigabytes);
/// every part has a known length, so the request carries a Content-Length.
async fn file_form(what: &str, files: &[(&'static str, &Path)]) -> Result<Form> {
    let mut form = Form::new();
    for (field, path) in files {
        let unreadable =
            |e: std::io::Error| Error::config(what, format!("cannot read {}: {e}", path.display()));
        let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let size = file.metadata().await.map_err(unreadable)?.len();
        let part = Part::stream_with_length(file, size)
            .file_name(file_name(path))
            .mime_str("application/octet-stream")
            .map_err(|e| Error::protocol(what, e.to_string()))?;
        form = form.part(*field, part);
    }
    Ok(form)
}
