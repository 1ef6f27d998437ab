//! The benchmark rig's network: a sender namespace joined to the host by a veth pair,
//! addressed inside 10.203.0.0/16 (the only range the load generators accept besides
//! loopback). Everything is removed on drop, on error and on Ctrl-C.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::util::{exec, succeeds};

/// Names of what the current rig created, for the Ctrl-C handler.
static CREATED: Mutex<Option<(String, String)>> = Mutex::new(None);

pub struct NetnsRig {
    pub namespace: String,
    /// The host side of the veth pair; the appliance and peers bind to `host_address`.
    pub host_interface: String,
    /// The sender's end of the veth pair, inside the namespace.
    pub sender_interface: String,
    pub host_address: Ipv4Addr,
    pub sender_address: Ipv4Addr,
}

impl NetnsRig {
    pub fn create() -> anyhow::Result<Self> {
        if !crate::util::is_root() {
            bail!("the benchmark rig creates a network namespace and needs root");
        }
        let id = std::process::id() % 250 + 1;
        let namespace = format!("kkbench{id}");
        let host_interface = format!("kkbh{id}");
        let sender_interface = format!("kkbs{id}");
        let host_address = Ipv4Addr::new(10, 203, id as u8, 1);
        let sender_address = Ipv4Addr::new(10, 203, id as u8, 2);
        // Leftovers from a run that was killed hard would make `ip` fail below.
        remove(&namespace, &host_interface);
        *CREATED.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((namespace.clone(), host_interface.clone()));
        let rig = Self { namespace, host_interface, sender_interface, host_address, sender_address };
        rig.build(&rig.sender_interface).context("creating the benchmark network namespace")?;
        Ok(rig)
    }

    fn build(&self, sender_interface: &str) -> anyhow::Result<()> {
        let ip = |args: &[&str]| exec(Command::new("ip").args(args));
        ip(&["netns", "add", &self.namespace])?;
        ip(&["link", "add", &self.host_interface, "type", "veth", "peer", "name", sender_interface])?;
        ip(&["link", "set", sender_interface, "netns", &self.namespace])?;
        ip(&["addr", "add", &format!("{}/30", self.host_address), "dev", &self.host_interface])?;
        ip(&["link", "set", &self.host_interface, "up"])?;
        let in_namespace = |args: &[&str]| {
            exec(Command::new("ip").args(["netns", "exec", &self.namespace, "ip"]).args(args))
        };
        in_namespace(&["addr", "add", &format!("{}/30", self.sender_address), "dev", sender_interface])?;
        in_namespace(&["link", "set", sender_interface, "up"])?;
        in_namespace(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A command run inside the sender namespace.
    pub fn command_in_namespace(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace, program]);
        command
    }
}

impl Drop for NetnsRig {
    fn drop(&mut self) {
        remove(&self.namespace, &self.host_interface);
        *CREATED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn remove(namespace: &str, host_interface: &str) {
    // Deleting the namespace destroys its veth end, which takes the host end with it;
    // deleting the host end too covers a half-built rig.
    let _ = succeeds(Command::new("ip").args(["netns", "del", namespace]));
    let _ = succeeds(Command::new("ip").args(["link", "del", host_interface]));
}

/// Removes whatever the current rig created; for the Ctrl-C handler.
pub fn remove_current() {
    if let Some((namespace, host_interface)) = CREATED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        remove(&namespace, &host_interface);
    }
}
