//! xtask's integration tests: the deployment files under deploy/ (manifests, images,
//! units, dashboard) checked against docs and CONVENTIONS.md.

mod deploy;
