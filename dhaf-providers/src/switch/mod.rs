//! Switchers: point a service's public entry at one of its entry points.
//!
//! - [`cloudflare`]: a proxied DNS record in a Cloudflare zone, created and written by the leader only.
//! - [`exec`]: the operator's own scripts (`init` tells the live state, `switch` changes it).
//! - [`rfc2136`]: address records on an authoritative DNS server, by TSIG-signed dynamic update.
//! - [`route53`]: the address record set in an Amazon Route 53 hosted zone, through its API.
//!
//! Every switcher answers [`dhaf_core::provider::Switcher::current`] from the far end itself, never
//! from memory, so the leader's periodic read-back sees drift made behind dhaf's back and repairs it.

use dhaf_core::registry::Registry;

#[cfg(feature = "cloudflare")]
pub mod cloudflare;
#[cfg(feature = "exec")]
pub mod exec;
#[cfg(feature = "rfc2136")]
pub mod rfc2136;
#[cfg(feature = "route53")]
pub mod route53;

/// Register the built-in switchers compiled in (`cloudflare`, `exec`, `rfc2136`, `route53`).
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "exec")]
    registry.switcher("exec", exec::ExecSwitcher::from_config);
    #[cfg(feature = "cloudflare")]
    registry.switcher("cloudflare", cloudflare::CloudflareSwitcher::from_config);
    #[cfg(feature = "rfc2136")]
    registry.switcher("rfc2136", rfc2136::Rfc2136Switcher::from_config);
    #[cfg(feature = "route53")]
    registry.switcher("route53", route53::Route53Switcher::from_config);
    let _ = registry;
}
