//! The Windows service: registering it with the Service Control Manager (install,
//! uninstall) and running under it (the dispatcher, the control handler, the status
//! reports). Built on Mullvad's `windows-service` crate, which wraps the SCM API
//! (`StartServiceCtrlDispatcherW`, `RegisterServiceCtrlHandlerExW`, `SetServiceStatus`,
//! `CreateServiceW`) safely; writing those by hand would repeat it.
//!
//! What the service does is the caller's: [`run`] takes the body (the whole
//! `replicate` run) and a stop callback. The service is `START_PENDING` until the body
//! calls its `running` argument (after checking its config), so a service that cannot
//! start never shows `RUNNING` and `Start-Service` fails; Stop and Shutdown call the
//! callback and report `STOP_PENDING`; `STOPPED` (with the body's exit code, a
//! service-specific one when not 0) is reported only when the body returns, that is
//! after its final sync.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// An error from the Service Control Manager, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ServiceError {
    what: String,
    #[source]
    source: windows_service::Error,
}

fn err(what: impl Into<String>) -> impl FnOnce(windows_service::Error) -> ServiceError {
    let what = what.into();
    move |source| ServiceError { what, source }
}

/// What `install` registers.
pub struct InstallSpec {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub executable: PathBuf,
    /// The arguments the SCM starts the executable with.
    pub arguments: Vec<OsString>,
}

/// Registers the service (automatic start, LocalSystem). Needs administrator rights.
pub fn install(spec: &InstallSpec) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(err("opening the Service Control Manager"))?;
    let info = ServiceInfo {
        name: spec.name.clone().into(),
        display_name: spec.display_name.clone().into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: spec.executable.clone(),
        launch_arguments: spec.arguments.clone(),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(err(format!("creating service {}", spec.name)))?;
    // Wine does not implement descriptions everywhere; a missing one is cosmetic.
    let _ = service.set_description(&spec.description);
    Ok(())
}

/// Stops the service if it runs (waiting up to `wait` for it to stop) and deletes it.
pub fn uninstall(name: &str, wait: Duration) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(err("opening the Service Control Manager"))?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(err(format!("opening service {name}")))?;
    let status = service
        .query_status()
        .map_err(err(format!("querying service {name}")))?;
    if status.current_state != ServiceState::Stopped {
        let _ = service.stop();
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            match service.query_status() {
                Ok(s) if s.current_state == ServiceState::Stopped => break,
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    service
        .delete()
        .map_err(err(format!("deleting service {name}")))
}

/// What [`run`] runs: the body gets a callback that reports `RUNNING` and returns the
/// process's exit code.
type Body = Box<dyn FnOnce(&dyn Fn()) -> u32 + Send>;
/// Called on Stop and Shutdown (from the SCM's handler thread).
type OnStop = Box<dyn Fn() + Send + Sync>;

static SERVICE: Mutex<Option<(String, OnStop, Body)>> = Mutex::new(None);

/// How long the SCM should wait for the final sync before it considers us hung.
const STOP_WAIT_HINT: Duration = Duration::from_secs(120);
/// How long the SCM should wait for the start (reading the config) before `RUNNING`.
const START_WAIT_HINT: Duration = Duration::from_secs(30);

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Runs as the service `name` under the Service Control Manager: blocks until the
/// service has stopped. `body` runs on the service's thread and calls its argument once
/// it has started (the service is `START_PENDING` until then); `on_stop` is called when
/// the SCM sends Stop or Shutdown. Fails at once when the process was not started by
/// the SCM.
pub fn run(name: &str, on_stop: OnStop, body: Body) -> Result<(), ServiceError> {
    *SERVICE.lock().unwrap_or_else(|e| e.into_inner()) = Some((name.to_string(), on_stop, body));
    service_dispatcher::start(name, ffi_service_main).map_err(err(format!(
        "connecting to the Service Control Manager as {name}"
    )))
}

fn status(state: ServiceState, exit: u32, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: if exit == 0 {
            ServiceExitCode::NO_ERROR
        } else {
            ServiceExitCode::ServiceSpecific(exit)
        },
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some((name, on_stop, body)) = SERVICE.lock().unwrap_or_else(|e| e.into_inner()).take()
    else {
        return;
    };
    let handle_slot: std::sync::Arc<Mutex<Option<service_control_handler::ServiceStatusHandle>>> =
        Default::default();
    let slot = handle_slot.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(h) = *slot.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = h.set_service_status(status(ServiceState::StopPending, 0, STOP_WAIT_HINT));
            }
            on_stop();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(handle) = service_control_handler::register(&name, handler) else {
        return;
    };
    *handle_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    let _ = handle.set_service_status(status(ServiceState::StartPending, 0, START_WAIT_HINT));
    let running = || {
        let _ = handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO));
    };
    let code = body(&running);
    let _ = handle.set_service_status(status(ServiceState::Stopped, code, Duration::ZERO));
}
