//! Version order per ecosystem, as each package manager defines it: dpkg (Debian), apk
//! (Alpine), PEP 440 (PyPI), semantic versions (npm, crates.io, Go). A version a scheme cannot
//! read is compared with dpkg's algorithm, which orders any mix of digits and letters sensibly.

use std::cmp::Ordering;

use crate::Ecosystem;

/// Compares two versions of a package of `ecosystem`.
pub fn compare(ecosystem: Ecosystem, a: &str, b: &str) -> Ordering {
    match ecosystem {
        Ecosystem::Debian => dpkg(a, b),
        Ecosystem::Alpine => apk(a, b),
        Ecosystem::PyPI => match (Pep440::parse(a), Pep440::parse(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => dpkg(a, b),
        },
        Ecosystem::Npm | Ecosystem::CratesIo | Ecosystem::Go => {
            let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
            match (parse(a), parse(b)) {
                // Build metadata does not order versions.
                (Some(x), Some(y)) => x.cmp_precedence(&y),
                _ => dpkg(a, b),
            }
        }
    }
}

/// dpkg's order (deb-version(7)): epoch, then upstream version, then revision, each part
/// compared as alternating runs of non-digits (`~` before everything, even the end; letters
/// before other characters) and numbers.
pub fn dpkg(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = dpkg_parts(a);
    let (eb, ub, rb) = dpkg_parts(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

fn dpkg_parts(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) && !e.is_empty() => {
            (e.parse().unwrap_or(0), rest)
        }
        _ => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        let (si, sj) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let by_number = numeric(&a[si..i]).cmp(&numeric(&b[sj..j]));
        if by_number != Ordering::Equal {
            return by_number;
        }
    }
    Ordering::Equal
}

/// A run of digits as a number, without overflowing: leading zeros dropped, then longer is
/// larger.
fn numeric(digits: &[u8]) -> (usize, &[u8]) {
    let start = digits
        .iter()
        .position(|d| *d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[start..];
    (digits.len(), digits)
}

/// apk's order (apk-tools `apk_version_compare`): dotted numbers, an optional letter,
/// suffixes (`_alpha`, `_beta`, `_pre`, `_rc` before the release; `_cvs`, `_svn`, `_git`,
/// `_hg`, `_p` after), then the package revision `-rN`.
pub fn apk(a: &str, b: &str) -> Ordering {
    Apk::parse(a).cmp(&Apk::parse(b))
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Apk {
    numbers: Vec<(usize, Vec<u8>)>,
    letter: u8,
    suffixes: Vec<(i8, (usize, Vec<u8>))>,
    revision: (usize, Vec<u8>),
}

impl Apk {
    fn parse(v: &str) -> Apk {
        let (v, revision) = match v.rsplit_once("-r") {
            Some((v, r)) if r.bytes().all(|b| b.is_ascii_digit()) => (v, r),
            _ => (v, "0"),
        };
        let mut parts = v.split('_');
        let release = parts.next().unwrap_or_default();
        let (release, letter) = match release.as_bytes().last() {
            Some(c) if c.is_ascii_lowercase() => (&release[..release.len() - 1], *c),
            _ => (release, 0),
        };
        let owned = |d: &[u8]| {
            let (len, digits) = numeric(d);
            (len, digits.to_vec())
        };
        let numbers = release.split('.').map(|n| owned(n.as_bytes())).collect();
        let suffixes = parts
            .map(|s| {
                let name_end = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
                let rank = match &s[..name_end] {
                    "alpha" => -4,
                    "beta" => -3,
                    "pre" => -2,
                    "rc" => -1,
                    "cvs" => 1,
                    "svn" => 2,
                    "git" => 3,
                    "hg" => 4,
                    "p" => 5,
                    _ => 0,
                };
                (rank, owned(&s.as_bytes()[name_end..]))
            })
            // A release with no suffix sorts as rank 0, between pre- and post-releases.
            .chain(std::iter::once((0, (0, Vec::new()))))
            .collect();
        Apk {
            numbers,
            letter,
            suffixes,
            revision: owned(revision.as_bytes()),
        }
    }
}

/// A PEP 440 version, ordered as the specification says (local labels ignored).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    /// (phase, number): dev-only releases first, then a < b < rc, then the release itself.
    pre: (i8, u64),
    /// -1 when there is no post-release.
    post: i64,
    /// `u64::MAX` when there is no dev-release.
    dev: u64,
}

impl Pep440 {
    fn parse(v: &str) -> Option<Pep440> {
        let v = v.trim().to_ascii_lowercase();
        let v = v.strip_prefix('v').unwrap_or(&v);
        let v = v.split('+').next()?;
        let (epoch, rest) = match v.split_once('!') {
            Some((e, rest)) => (e.parse().ok()?, rest),
            None => (0, v),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let mut release: Vec<u64> = rest[..split]
            .trim_end_matches('.')
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let mut tail = &rest[split..];
        fn take(tail: &mut &str, names: &[&str]) -> Option<u64> {
            let t = tail.trim_start_matches(['.', '-', '_']);
            let name = names.iter().find(|n| t.starts_with(**n))?;
            let t = t[name.len()..].trim_start_matches(['.', '-', '_']);
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let n = t[..end].parse().unwrap_or(0);
            *tail = &t[end..];
            Some(n)
        }
        let pre_phase = |t: &str| {
            let t = t.trim_start_matches(['.', '-', '_']);
            if t.starts_with("alpha") || (t.starts_with('a') && !t.starts_with("after")) {
                Some(1)
            } else if t.starts_with("beta") || t.starts_with('b') {
                Some(2)
            } else if ["rc", "c", "pre", "preview"]
                .iter()
                .any(|p| t.starts_with(p))
            {
                Some(3)
            } else {
                None
            }
        };
        let pre = match pre_phase(tail) {
            Some(phase) => {
                let n = take(
                    &mut tail,
                    &["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"],
                )?;
                Some((phase, n))
            }
            None => None,
        };
        let post = take(&mut tail, &["post", "rev", "r"]);
        let dev = take(&mut tail, &["dev"]);
        if !tail.trim_start_matches(['.', '-', '_']).is_empty() {
            return None;
        }
        let pre = match (pre, post, dev) {
            (Some(p), _, _) => p,
            (None, None, Some(_)) => (0, 0),
            _ => (4, 0),
        };
        Some(Pep440 {
            epoch,
            release,
            pre,
            post: post.map_or(-1, |p| p as i64),
            dev: dev.unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascending(ecosystem: Ecosystem, versions: &[&str]) {
        for pair in versions.windows(2) {
            assert_eq!(
                compare(ecosystem, pair[0], pair[1]),
                Ordering::Less,
                "{ecosystem:?}: {} < {}",
                pair[0],
                pair[1]
            );
            assert_eq!(compare(ecosystem, pair[1], pair[0]), Ordering::Greater);
        }
    }

    #[test]
    fn dpkg_orders_as_debian_policy_says() {
        ascending(
            Ecosystem::Debian,
            &[
                "1.0~rc1-1",
                "1.0-1",
                "1.0-1+deb12u1",
                "1.0-2",
                "1.0a-1",
                "1.0.1-1",
                "1.10-1",
                "3.0.11-1~deb12u1",
                "3.0.11-1~deb12u2",
                "3.0.11-1",
                "1:0.1-1",
            ],
        );
        assert_eq!(dpkg("1.0-01", "1.0-1"), Ordering::Equal);
        assert_eq!(dpkg("99999999999999999999999", "1"), Ordering::Greater);
    }

    #[test]
    fn apk_orders_as_apk_tools_says() {
        ascending(
            Ecosystem::Alpine,
            &[
                "1.2.3_alpha1-r0",
                "1.2.3_beta2-r0",
                "1.2.3_rc1-r0",
                "1.2.3-r0",
                "1.2.3-r1",
                "1.2.3_p1-r0",
                "1.2.3a-r0",
                "1.2.4-r0",
                "1.10-r0",
            ],
        );
    }

    #[test]
    fn pep440_orders_dev_pre_release_post() {
        ascending(
            Ecosystem::PyPI,
            &[
                "1.0.dev1",
                "1.0a1",
                "1.0b2.post3",
                "1.0rc1",
                "1.0",
                "1.0.post1",
                "1.1.dev0",
                "2.31.0",
                "1!0.5",
            ],
        );
        assert_eq!(compare(Ecosystem::PyPI, "1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0-RC1", "1.0rc1"),
            Ordering::Equal
        );
        assert_eq!(
            compare(Ecosystem::PyPI, "1.0+local", "1.0"),
            Ordering::Equal
        );
    }

    #[test]
    fn semver_ecosystems_ignore_build_metadata_and_a_leading_v() {
        ascending(
            Ecosystem::Npm,
            &[
                "1.0.0-alpha",
                "1.0.0-alpha.1",
                "1.0.0-beta",
                "1.0.0",
                "1.2.0",
                "1.10.0",
            ],
        );
        assert_eq!(
            compare(Ecosystem::Go, "v1.2.3", "1.2.3+meta"),
            Ordering::Equal
        );
        // Not semver: dpkg's order still ranks it.
        assert_eq!(
            compare(Ecosystem::Go, "v0.0.0-2021", "v0.0.0-2022"),
            Ordering::Less
        );
    }
}
