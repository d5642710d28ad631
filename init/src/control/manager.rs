//! The methods of `io.smss.Manager` and `org.varlink.service`: decoding a call's parameters
//! into a typed request, the errors, and the interface descriptions. Pure: no I/O.

use serde_json::{json, Map, Value};

use super::wire::Call;

pub const INTERFACE: &str = "io.smss.Manager";
pub const SERVICE: &str = "org.varlink.service";

/// `io.smss.Manager` in the varlink interface definition language.
pub const DESCRIPTION: &str = include_str!("io.smss.Manager.varlink");

/// `org.varlink.service`, as every varlink service offers it.
pub const SERVICE_DESCRIPTION: &str = "\
# The Varlink Service Interface is provided by every varlink service. It
# describes the service and the interfaces it implements.
interface org.varlink.service

# Get a list of all the interfaces a service provides and information
# about the implementation.
method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

# Get the description of an interface that is implemented by this service.
method GetInterfaceDescription(interface: string) -> (description: string)

# The requested interface was not found.
error InterfaceNotFound (interface: string)

# The requested method was not found
error MethodNotFound (method: string)

# The interface defines the requested method, but the service does not
# implement it.
error MethodNotImplemented (method: string)

# One of the passed parameters is invalid.
error InvalidParameter (parameter: string)

# Client is denied access
error PermissionDenied ()

# Method is expected to be called with 'more' set to true, but wasn't
error ExpectedMore ()
";

/// `Shutdown`'s action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Poweroff,
    Halt,
}

impl Action {
    pub fn from_name(s: &str) -> Option<Action> {
        match s {
            "reboot" => Some(Action::Reboot),
            "poweroff" => Some(Action::Poweroff),
            "halt" => Some(Action::Halt),
            _ => None,
        }
    }
}

/// `CreateSession`'s parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateSession {
    pub seat: Option<String>,
    pub tty: Option<String>,
    pub user: Option<String>,
    pub command: Option<Vec<String>>,
    /// `KEY=VALUE` strings.
    pub environment: Vec<String>,
    /// Extension: share a seat that a live session already uses.
    pub allow_shared_seat: bool,
    /// Extension: the session cgroup's pids.max.
    pub pids_max: Option<u64>,
}

/// A decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    GetInfo,
    GetInterfaceDescription {
        interface: String,
    },
    GetStatus,
    CreateSession(CreateSession),
    ListSessions,
    TerminateSession {
        id: u32,
        wait: bool,
    },
    LoadDeferredSubsystem {
        name: String,
        session: Option<u32>,
    },
    QueueFileRename {
        source: String,
        destination: Option<String>,
        replace_existing: bool,
    },
    Shutdown(Action),
}

impl Method {
    /// Everything but the read-only methods needs uid 0 or the allowed group.
    pub fn privileged(&self) -> bool {
        !matches!(
            self,
            Method::GetInfo
                | Method::GetInterfaceDescription { .. }
                | Method::GetStatus
                | Method::ListSessions
        )
    }
}

/// An error reply: its qualified name and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    pub error: String,
    pub parameters: Value,
}

impl MethodError {
    fn new(error: &str, parameters: Value) -> MethodError {
        MethodError {
            error: error.to_string(),
            parameters,
        }
    }

    pub fn permission_denied(method: &str, uid: u32) -> Self {
        Self::new(
            "io.smss.Manager.PermissionDenied",
            json!({"method": method, "uid": uid}),
        )
    }

    pub fn no_such_session(id: u32) -> Self {
        Self::new("io.smss.Manager.NoSuchSession", json!({ "id": id }))
    }

    pub fn no_such_subsystem(name: &str) -> Self {
        Self::new("io.smss.Manager.NoSuchSubsystem", json!({ "name": name }))
    }

    /// A well-typed value smss cannot use (an unknown seat, a missing tty).
    pub fn invalid(parameter: &str, reason: impl Into<String>) -> Self {
        Self::new(
            "io.smss.Manager.InvalidParameter",
            json!({"parameter": parameter, "reason": reason.into()}),
        )
    }

    pub fn limit_reached(limit: &str, value: u64) -> Self {
        Self::new(
            "io.smss.Manager.LimitReached",
            json!({"limit": limit, "value": value}),
        )
    }

    /// The request was fine but carrying it out failed (a session instance could not start).
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::new("io.smss.Manager.Failed", json!({"reason": reason.into()}))
    }

    /// Missing, unknown or wrongly typed parameter (varlink's own error).
    pub fn bad_parameter(parameter: &str) -> Self {
        Self::new(
            "org.varlink.service.InvalidParameter",
            json!({ "parameter": parameter }),
        )
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            "org.varlink.service.MethodNotFound",
            json!({ "method": method }),
        )
    }

    pub fn interface_not_found(interface: &str) -> Self {
        Self::new(
            "org.varlink.service.InterfaceNotFound",
            json!({ "interface": interface }),
        )
    }
}

/// Turn a call into a typed request, checking every parameter's type. Unknown parameters
/// are rejected (a misspelt `allow_shared_seat` must not be ignored silently).
pub fn decode(call: &Call) -> Result<Method, MethodError> {
    let p = Params(&call.parameters);
    let method = match (call.interface(), call.member()) {
        (SERVICE, "GetInfo") => {
            p.only(&[])?;
            Method::GetInfo
        }
        (SERVICE, "GetInterfaceDescription") => {
            p.only(&["interface"])?;
            Method::GetInterfaceDescription {
                interface: p.string("interface")?,
            }
        }
        (SERVICE, _) => return Err(MethodError::method_not_found(&call.method)),
        (INTERFACE, "GetStatus") => {
            p.only(&[])?;
            Method::GetStatus
        }
        (INTERFACE, "ListSessions") => {
            p.only(&[])?;
            Method::ListSessions
        }
        (INTERFACE, "CreateSession") => {
            p.only(&[
                "seat",
                "tty",
                "user",
                "command",
                "environment",
                "allow_shared_seat",
                "pids_max",
            ])?;
            Method::CreateSession(CreateSession {
                seat: p.opt_string("seat")?,
                tty: p.opt_string("tty")?,
                user: p.opt_string("user")?,
                command: p.opt_strings("command")?,
                environment: p.opt_strings("environment")?.unwrap_or_default(),
                allow_shared_seat: p.opt_bool("allow_shared_seat")?.unwrap_or(false),
                pids_max: p.opt_u64("pids_max")?,
            })
        }
        (INTERFACE, "TerminateSession") => {
            p.only(&["id", "wait"])?;
            Method::TerminateSession {
                id: p.u32("id")?,
                wait: p.opt_bool("wait")?.unwrap_or(true),
            }
        }
        (INTERFACE, "LoadDeferredSubsystem") => {
            p.only(&["name", "session"])?;
            Method::LoadDeferredSubsystem {
                name: p.string("name")?,
                session: p.opt_u32("session")?,
            }
        }
        (INTERFACE, "QueueFileRename") => {
            p.only(&["source", "destination", "replace_existing"])?;
            Method::QueueFileRename {
                source: p.string("source")?,
                destination: p.opt_string("destination")?,
                replace_existing: p.opt_bool("replace_existing")?.unwrap_or(false),
            }
        }
        (INTERFACE, "Shutdown") => {
            p.only(&["action"])?;
            let action = p.string("action")?;
            Method::Shutdown(
                Action::from_name(&action).ok_or_else(|| MethodError::bad_parameter("action"))?,
            )
        }
        (INTERFACE, _) => return Err(MethodError::method_not_found(&call.method)),
        (other, _) => return Err(MethodError::interface_not_found(other)),
    };
    Ok(method)
}

/// Typed access to a call's parameters; `null` counts as absent (varlink's optional).
struct Params<'a>(&'a Map<String, Value>);

impl Params<'_> {
    fn only(&self, known: &[&str]) -> Result<(), MethodError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(MethodError::bad_parameter(k)),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, MethodError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(MethodError::bad_parameter(name)),
        }
    }

    fn string(&self, name: &str) -> Result<String, MethodError> {
        self.opt_string(name)?
            .ok_or_else(|| MethodError::bad_parameter(name))
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, MethodError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(MethodError::bad_parameter(name)),
        }
    }

    fn opt_u64(&self, name: &str) -> Result<Option<u64>, MethodError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| MethodError::bad_parameter(name)),
        }
    }

    fn opt_u32(&self, name: &str) -> Result<Option<u32>, MethodError> {
        match self.opt_u64(name)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| MethodError::bad_parameter(name)),
        }
    }

    fn u32(&self, name: &str) -> Result<u32, MethodError> {
        self.opt_u32(name)?
            .ok_or_else(|| MethodError::bad_parameter(name))
    }

    fn opt_strings(&self, name: &str) -> Result<Option<Vec<String>>, MethodError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| MethodError::bad_parameter(name)),
            Some(_) => Err(MethodError::bad_parameter(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::wire::parse_call;

    fn call(s: &str) -> Result<Method, MethodError> {
        decode(&parse_call(s.as_bytes()).unwrap())
    }

    #[test]
    fn decodes_every_method() {
        assert_eq!(
            call(r#"{"method":"org.varlink.service.GetInfo"}"#),
            Ok(Method::GetInfo)
        );
        assert_eq!(
            call(
                r#"{"method":"io.smss.Manager.CreateSession","parameters":{"seat":"seat0","command":["sh","-c","x"],"environment":["A=1"],"tty":null}}"#
            ),
            Ok(Method::CreateSession(CreateSession {
                seat: Some("seat0".into()),
                command: Some(vec!["sh".into(), "-c".into(), "x".into()]),
                environment: vec!["A=1".into()],
                ..Default::default()
            }))
        );
        assert_eq!(
            call(r#"{"method":"io.smss.Manager.TerminateSession","parameters":{"id":4}}"#),
            Ok(Method::TerminateSession { id: 4, wait: true })
        );
        assert_eq!(
            call(r#"{"method":"io.smss.Manager.Shutdown","parameters":{"action":"halt"}}"#),
            Ok(Method::Shutdown(Action::Halt))
        );
        assert_eq!(
            call(r#"{"method":"io.smss.Manager.QueueFileRename","parameters":{"source":"/a"}}"#),
            Ok(Method::QueueFileRename {
                source: "/a".into(),
                destination: None,
                replace_existing: false
            })
        );
    }

    #[test]
    fn errors_name_their_parameter() {
        let e = call(r#"{"method":"io.smss.Manager.TerminateSession","parameters":{"id":"4"}}"#)
            .unwrap_err();
        assert_eq!(e.error, "org.varlink.service.InvalidParameter");
        assert_eq!(e.parameters, json!({"parameter": "id"}));
        let e = call(r#"{"method":"io.smss.Manager.TerminateSession","parameters":{"id":-1}}"#)
            .unwrap_err();
        assert_eq!(e.parameters, json!({"parameter": "id"}));
        let e = call(r#"{"method":"io.smss.Manager.TerminateSession"}"#).unwrap_err();
        assert_eq!(e.parameters, json!({"parameter": "id"}));
        let e = call(r#"{"method":"io.smss.Manager.GetStatus","parameters":{"x":1}}"#).unwrap_err();
        assert_eq!(e.parameters, json!({"parameter": "x"}));
        let e = call(r#"{"method":"io.smss.Manager.CreateSession","parameters":{"command":[1]}}"#)
            .unwrap_err();
        assert_eq!(e.parameters, json!({"parameter": "command"}));
        let e = call(r#"{"method":"io.smss.Manager.Shutdown","parameters":{"action":"explode"}}"#)
            .unwrap_err();
        assert_eq!(e.parameters, json!({"parameter": "action"}));
    }

    #[test]
    fn unknown_methods_and_interfaces() {
        let e = call(r#"{"method":"io.smss.Manager.Frobnicate"}"#).unwrap_err();
        assert_eq!(e.error, "org.varlink.service.MethodNotFound");
        let e = call(r#"{"method":"com.example.X.Y"}"#).unwrap_err();
        assert_eq!(e.error, "org.varlink.service.InterfaceNotFound");
        assert_eq!(e.parameters, json!({"interface": "com.example.X"}));
        let e = call(r#"{"method":"nodot"}"#).unwrap_err();
        assert_eq!(e.error, "org.varlink.service.InterfaceNotFound");
    }

    #[test]
    fn privileges() {
        assert!(!Method::GetStatus.privileged());
        assert!(!Method::ListSessions.privileged());
        assert!(Method::Shutdown(Action::Reboot).privileged());
        assert!(Method::TerminateSession { id: 1, wait: true }.privileged());
    }

    #[test]
    fn description_names_the_interface() {
        assert!(DESCRIPTION.contains("interface io.smss.Manager\n"));
        for m in [
            "GetStatus",
            "CreateSession",
            "ListSessions",
            "TerminateSession",
            "LoadDeferredSubsystem",
            "QueueFileRename",
            "Shutdown",
        ] {
            assert!(DESCRIPTION.contains(&format!("method {m}(")), "{m}");
        }
    }
}
