//! Integration tests of the agent binary (docs/agent.md).
