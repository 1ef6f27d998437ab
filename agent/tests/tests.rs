//! Integration tests of the agent binary (docs/agent.md): one test binary, a module each.

mod harness;
mod heartbeat;
mod live_config;
mod netns;
mod serve_on_agent;
