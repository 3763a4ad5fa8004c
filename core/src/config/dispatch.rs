//! `[[domains]]` and the APIs' `hosts` → `gateway::Dispatch`: custom domains with their base
//! path mappings, the groups of APIs that answer the same hosts, and the checks that keep
//! dispatch unambiguous (unknown API or stage in a mapping, two APIs answering the same
//! `/{stage}` or both offering a `$default` stage for the same hosts).

use super::diagnostics::Diagnostics;
use super::model::Config;
use super::validate;
use crate::gateway::{Api, Dispatch, Domain, Group, Protocol, StageRef, Throttle};
use std::collections::HashMap;

pub(crate) fn build(
    cfg: &Config,
    apis: &[Api],
    throttles: Vec<Vec<Option<Throttle>>>,
    d: &mut Diagnostics<'_>,
) -> Dispatch {
    let mut dispatch = Dispatch {
        throttles,
        ..Dispatch::default()
    };
    domains(cfg, apis, &mut dispatch, d);
    host_groups(cfg, apis, &mut dispatch, d);
    dispatch
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// `Rest` if there is at least one API and all are REST APIs, else `Http`.
fn protocol_of(apis: &[Api], members: impl IntoIterator<Item = u32>) -> Protocol {
    let mut any = false;
    for i in members {
        any = true;
        if apis.get(i as usize).map(|a| a.protocol) != Some(Protocol::Rest) {
            return Protocol::Http;
        }
    }
    if any {
        Protocol::Rest
    } else {
        Protocol::Http
    }
}

fn domains(cfg: &Config, apis: &[Api], out: &mut Dispatch, d: &mut Diagnostics<'_>) {
    for dom in &cfg.domains {
        let Some(name) = &dom.name else { continue };
        let lower = match validate::domain_name(&name.value) {
            Ok(l) => l,
            Err(reason) => {
                d.error(name.span.clone(), reason);
                continue;
            }
        };
        if dom.mappings.is_empty() {
            d.error(
                name.span.clone(),
                format!("custom domain `{}` has no [[domains.mappings]]", name.value),
            );
        }
        let domain = domain_mappings(&name.value, &dom.mappings, apis, d);
        add_domain(name, &lower, domain, out, d);
    }
}

/// The custom domain `name` with its base path mappings (longest path first), skipping the
/// ones with an invalid or repeated path or an unknown API or stage (reported).
fn domain_mappings(
    name: &str,
    mappings: &[super::model::Mapping],
    apis: &[Api],
    d: &mut Diagnostics<'_>,
) -> Domain {
    let mut domain = Domain {
        mappings: Vec::new(),
        none: None,
        unmapped: Protocol::Http,
    };
    let mut paths: Vec<&str> = Vec::new();
    for m in mappings {
        let path = m.path.as_ref().map_or("", |p| p.value.as_str());
        let path_span = m.path.as_ref().map_or(m.span.clone(), |p| p.span.clone());
        if let Err(reason) = validate::mapping_path(path) {
            d.error(path_span, reason);
            continue;
        }
        if paths.contains(&path) {
            let shown = if path.is_empty() { "(none)" } else { path };
            d.error(
                path_span,
                format!("domain `{name}` already has a mapping for path `{shown}`"),
            );
            continue;
        }
        paths.push(path);
        let Some(target) = mapping_target(m, apis, d) else {
            continue;
        };
        if path.is_empty() {
            domain.none = Some(target);
        } else {
            domain.mappings.push((path.into(), target));
        }
    }
    domain
        .mappings
        .sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    let members = domain
        .mappings
        .iter()
        .map(|m| m.1 .0)
        .chain(domain.none.map(|n| n.0));
    domain.unmapped = protocol_of(apis, members);
    domain
}

/// The (API, stage) a mapping names; `None` when either is not written (quietly) or unknown
/// (reported).
fn mapping_target(
    m: &super::model::Mapping,
    apis: &[Api],
    d: &mut Diagnostics<'_>,
) -> Option<StageRef> {
    let (Some(api_name), Some(stage_name)) = (&m.api, &m.stage) else {
        return None;
    };
    let Some(api) = apis.iter().position(|a| *a.name == api_name.value) else {
        d.error(
            api_name.span.clone(),
            format!("no API is named `{}`", api_name.value),
        );
        return None;
    };
    let Some(stage) = apis[api]
        .stages
        .iter()
        .position(|s| *s.name == stage_name.value)
    else {
        d.error(
            stage_name.span.clone(),
            format!(
                "API `{}` has no stage `{}`",
                api_name.value, stage_name.value
            ),
        );
        return None;
    };
    Some((index(api), index(stage)))
}

/// Registers `domain` under its lowercase name `lower` (`*.` names among the wildcards);
/// reports a name that is already taken.
fn add_domain(
    name: &super::model::Text,
    lower: &str,
    domain: Domain,
    out: &mut Dispatch,
    d: &mut Diagnostics<'_>,
) {
    let (table, key) = match lower.strip_prefix("*.") {
        Some(base) => (&mut out.wildcard_domains, base.as_bytes()),
        None => (&mut out.exact_domains, lower.as_bytes()),
    };
    if table.contains_key(key) {
        d.error(
            name.span.clone(),
            format!("another [[domains]] entry is already named `{lower}`"),
        );
        return;
    }
    table.insert(key.into(), index(out.domains.len()));
    out.domains.push(domain);
}

/// Whether requests for `host` (lowercase) go to a custom domain rather than to `hosts`.
fn is_domain(out: &Dispatch, host: &str) -> bool {
    if out.exact_domains.contains_key(host.as_bytes()) {
        return true;
    }
    let mut rest = host;
    while let Some((_, tail)) = rest.split_once('.') {
        if out.wildcard_domains.contains_key(tail.as_bytes()) {
            return true;
        }
        rest = tail;
    }
    false
}

fn host_groups(cfg: &Config, apis: &[Api], out: &mut Dispatch, d: &mut Diagnostics<'_>) {
    // Each distinct host, with the APIs that list it, in order of first appearance.
    let mut hosts: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, a) in cfg.apis.iter().enumerate() {
        for h in &a.hosts {
            let host = match validate::host_name(&h.value) {
                Ok(host) => host,
                Err(reason) => {
                    d.error(h.span.clone(), reason);
                    continue;
                }
            };
            if is_domain(out, &host) {
                d.error(
                    h.span.clone(),
                    format!("`{host}` is a custom domain ([[domains]]): its requests follow the domain's mappings, not `hosts`"),
                );
                continue;
            }
            match hosts.iter_mut().find(|(name, _)| *name == host) {
                Some((_, members)) if members.contains(&i) => {
                    d.error(h.span.clone(), format!("`{host}` is listed twice"));
                }
                Some((_, members)) => members.push(i),
                None => hosts.push((host, vec![i])),
            }
        }
    }
    let hostless: Vec<usize> = (0..cfg.apis.len())
        .filter(|&i| cfg.apis[i].hosts.is_empty())
        .collect();
    out.groups.push(group(cfg, apis, &hostless, None, d));
    for (host, members) in hosts {
        out.hosts
            .insert(host.as_bytes().into(), index(out.groups.len()));
        out.groups.push(group(cfg, apis, &members, Some(&host), d));
    }
}

/// The dispatch table of APIs answering the same hosts (`host: None`: any host).
fn group(
    cfg: &Config,
    apis: &[Api],
    members: &[usize],
    host: Option<&str>,
    d: &mut Diagnostics<'_>,
) -> Group {
    let mut stages: HashMap<Box<str>, StageRef, ahash::RandomState> = HashMap::default();
    let mut default_stage: Option<StageRef> = None;
    let shared = match host {
        None => "neither API has `hosts`".to_string(),
        Some(h) => format!("both APIs list `{h}` in `hosts`"),
    };
    for &i in members {
        let (Some(api), Some(api_cfg)) = (apis.get(i), cfg.apis.get(i)) else {
            continue;
        };
        for (j, stage) in api.stages.iter().enumerate() {
            let at = api_cfg
                .stages
                .get(j)
                .and_then(|s| s.name.as_ref())
                .map_or(api_cfg.span.clone(), |n| n.span.clone());
            let name = &*stage.name;
            if name.is_empty() {
                continue;
            }
            let here: StageRef = (index(i), index(j));
            if name == "$default" {
                if api.protocol != Protocol::Http {
                    continue;
                }
                match default_stage {
                    Some((other, _)) if other != here.0 => d.error(
                        at,
                        format!(
                            "API `{}` also has a `$default` stage and {shared}: requests that name no stage would be ambiguous",
                            apis[other as usize].name
                        ),
                    ),
                    Some(_) => {}
                    None => default_stage = Some(here),
                }
                continue;
            }
            match stages.get(name) {
                Some(&(other, _)) if other != here.0 => d.error(
                    at,
                    format!(
                        "API `{}` also has a stage `{name}` and {shared}: requests to /{name}/... would be ambiguous",
                        apis[other as usize].name
                    ),
                ),
                Some(_) => {}
                None => {
                    stages.insert(name.into(), here);
                }
            }
        }
    }
    Group {
        stages,
        default_stage,
        unmatched: protocol_of(apis, members.iter().map(|&i| index(i))),
    }
}
