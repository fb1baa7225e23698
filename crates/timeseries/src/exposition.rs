//! Reads the Prometheus text exposition (the `/metrics` page) into samples, so the store keeps
//! exactly the series a scrape would see, under the same names.
//!
//! Histogram buckets (`<name>_bucket`) are left out: they are most of a page's series and
//! the built-in queries do not read them. `_sum` and `_count` stay, so average latencies
//! (`rate(x_sum[5m]) / rate(x_count[5m])`) can still be asked for.

use crate::{Labels, Sample};

/// The samples of a text exposition page, in page order. A line that cannot be read is an
/// error naming it: the page is the server's own, so a bad line is a bug, not input to skip.
pub fn parse(page: &str) -> Result<Vec<Sample>, String> {
    let mut histograms: Vec<&str> = Vec::new();
    let mut samples = Vec::new();
    for line in page.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if let (Some("TYPE"), Some(name), Some("histogram")) =
                (words.next(), words.next(), words.next())
            {
                histograms.push(name);
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let sample = sample(line).ok_or_else(|| format!("unreadable metric line: {line}"))?;
        let name = &sample.labels["__name__"];
        let bucket = name
            .strip_suffix("_bucket")
            .is_some_and(|family| histograms.contains(&family));
        if !bucket {
            samples.push(sample);
        }
    }
    Ok(samples)
}

/// `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Labels::from([("__name__".to_owned(), name.to_owned())]);
    if let Some(inside) = rest.strip_prefix('{') {
        rest = label_pairs(inside, &mut labels)?;
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { labels, value })
}

/// Reads `a="x",b="y"}` into `labels`; returns what follows the `}`.
fn label_pairs<'a>(mut rest: &'a str, labels: &mut Labels) -> Option<&'a str> {
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some(after);
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP push_operations Manifest pushes (PUT), by repository class and result.
# TYPE push_operations counter
push_operations_total{repository_class="team",result="success"} 3
push_operations_total{repository_class="_",result="client_error"} 1
# TYPE registry_http_request_duration_seconds histogram
# UNIT registry_http_request_duration_seconds seconds
registry_http_request_duration_seconds_sum{family="manifests",method="GET"} 0.0125
registry_http_request_duration_seconds_count{family="manifests",method="GET"} 4
registry_http_request_duration_seconds_bucket{le="0.00025",family="manifests",method="GET"} 0
registry_http_request_duration_seconds_bucket{le="+Inf",family="manifests",method="GET"} 4
# TYPE registry_storage_bytes gauge
registry_storage_bytes 1048576
odd{path="a \"quoted\" \\ name\nnext"} +Inf 1700000000000
# EOF
"#;

    fn find<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
        samples
            .iter()
            .filter(|s| s.labels["__name__"] == name)
            .collect()
    }

    #[test]
    fn a_page_becomes_samples_without_histogram_buckets() {
        let samples = parse(PAGE).expect("parse");
        let pushes = find(&samples, "push_operations_total");
        assert_eq!(pushes.len(), 2);
        assert_eq!(pushes[0].labels["repository_class"], "team");
        assert_eq!(pushes[0].labels["result"], "success");
        assert_eq!(pushes[0].value, 3.0);
        assert_eq!(
            find(&samples, "registry_http_request_duration_seconds_count")[0].value,
            4.0
        );
        assert!(find(&samples, "registry_http_request_duration_seconds_bucket").is_empty());
        assert_eq!(
            find(&samples, "registry_storage_bytes")[0].value,
            1_048_576.0
        );
        assert_eq!(samples.len(), 6);
    }

    #[test]
    fn label_values_are_unescaped_and_timestamps_ignored() {
        let samples = parse(PAGE).expect("parse");
        let odd = find(&samples, "odd")[0];
        assert_eq!(odd.labels["path"], "a \"quoted\" \\ name\nnext");
        assert_eq!(odd.value, f64::INFINITY);
    }

    #[test]
    fn an_unreadable_line_is_named() {
        let error = parse("ok 1\nbroken{a=\"x\" 2\n").expect_err("bad line");
        assert!(error.contains("broken{a=\"x\" 2"), "{error}");
        assert!(parse("no_value\n").is_err());
    }
}
