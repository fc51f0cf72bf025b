//! The simulated services' container logs, in Spring Boot's default console pattern
//! (`%d{yyyy-MM-dd HH:mm:ss.SSS} %5p ${PID} --- [%15.15t] %-40.40logger{39} : %m`, Spring Boot
//! 2.x `defaults.xml`): the application's start at the pod's creation, INFO lines of what each
//! request ran, WARN for a slow request, and ERROR with the exception and its stack (one log
//! line per stack line, as the container runtime stores them) when an exception escaped.
//!
//! A pod's log holds the hops that pod served during its life: a replacement pod (new name)
//! starts a new log; a pod recreated under the same name (a StatefulSet's) has the lines of its
//! own life, and its earlier life is what `previous` reads when the kubelet keeps one.

use chrono::{DateTime, Utc};

use super::traffic::{CallRecord, Exception, Hop, Outcome, Traffic, SLOW_MS};
use super::traffic_model;
use crate::kube_fake::{LogRequest, LogSource, PodLife};
use crate::train_ticket;

type Line = (DateTime<Utc>, String);

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Logback's `%-40.40logger{39}`: packages shortened to their first letter, left to right,
/// until the name fits 39 characters; then padded (or cut) to 40.
fn logger(name: &str) -> String {
    let mut parts: Vec<String> = name.split('.').map(str::to_string).collect();
    let n = parts.len();
    for i in 0..n.saturating_sub(1) {
        if parts.join(".").len() <= 39 {
            break;
        }
        parts[i] = parts[i]
            .chars()
            .next()
            .map(String::from)
            .unwrap_or_default();
    }
    let s = parts.join(".");
    let s: String = s
        .chars()
        .skip(s.chars().count().saturating_sub(40))
        .collect();
    format!("{s:<40}")
}

/// `%15.15t` of Tomcat's worker `http-nio-<port>-exec-<k>`: the last 15 characters.
fn thread(port: u16, k: u64) -> String {
    let t = format!("http-nio-{port}-exec-{k}");
    let s: String = t.chars().skip(t.len().saturating_sub(15)).collect();
    format!("{s:>15}")
}

fn line(ms: i64, level: &str, thread: &str, logger_name: &str, msg: &str) -> Line {
    let t = at(ms);
    (
        t,
        format!(
            "{} {level:>5} 1 --- [{thread}] {} : {msg}",
            t.format("%Y-%m-%d %H:%M:%S%.3f"),
            logger(logger_name)
        ),
    )
}

/// The exception at the root of a hop's failure: the I/O error of a failed call, else the
/// exception itself.
fn root_cause<'a>(hop: &'a Hop, ex: &'a Exception) -> &'a Exception {
    match hop.calls.last() {
        Some(CallRecord {
            unreached: Some(_),
            failed: Some(cause),
            ..
        }) => cause,
        _ => ex,
    }
}

fn simple(class: &str) -> &str {
    class.rsplit('.').next().unwrap_or(class)
}

fn hop_lines(hop: &Hop, seq: u64, out: &mut Vec<Line>) {
    let port = traffic_model::port(&hop.app);
    let th = thread(port, 1 + seq % 10);
    let gateway = hop.class.is_empty();
    for (ms, msg) in &hop.info {
        out.push(line(*ms, "INFO", &th, &hop.class, msg));
    }
    let took = hop.end_ms - hop.start_ms;
    if took > SLOW_MS {
        let who = if gateway {
            "o.s.c.g.filter.NettyRoutingFilter"
        } else {
            &hop.class
        };
        out.push(line(
            hop.end_ms,
            "WARN",
            &th,
            who,
            &format!("Slow request {} {} took {took} ms", hop.method, hop.path),
        ));
    }
    if let Outcome::Refused { msg } = &hop.outcome {
        if !gateway {
            out.push(line(
                hop.end_ms,
                "WARN",
                &th,
                &hop.class,
                &format!("[{} {}] answered status 0: {msg}", hop.method, hop.path),
            ));
        }
    }
    if let Some(ex) = hop.threw() {
        let root = root_cause(hop, ex);
        let head = if gateway {
            let th = format!("{:>15}", format!("ctor-http-nio-{}", 1 + seq % 4));
            out.push(line(
                hop.end_ms,
                "ERROR",
                &th,
                "org.springframework.boot.autoconfigure.web.reactive.error.AbstractErrorWebExceptionHandler",
                &format!(
                    "[{:08x}-{seq}]  500 Server Error for HTTP {} \"{}\"",
                    seq.wrapping_mul(2_654_435_761) & 0xffff_ffff,
                    hop.method,
                    hop.path
                ),
            ));
            None
        } else {
            Some(format!(
                "Servlet.service() for servlet [dispatcherServlet] in context with path [] threw exception \
                 [Request processing failed; nested exception is {}] with root cause",
                ex.text()
            ))
        };
        if let Some(h) = head {
            out.push(line(
                hop.end_ms,
                "ERROR",
                &th,
                "org.apache.catalina.core.ContainerBase.[Tomcat].[localhost].[/].[dispatcherServlet]",
                &h,
            ));
            out.push((at(hop.end_ms), String::new()));
        }
        out.push((at(hop.end_ms), root.text()));
        let svc = &hop.class;
        // Where the JDK throws each I/O error (JDK 8, HttpURLConnection under RestTemplate).
        let io = match root.class.as_str() {
            "java.net.UnknownHostException" => {
                Some("java.net.InetAddress.getAllByName0(InetAddress.java:1281)")
            }
            "java.net.ConnectException" => {
                Some("java.net.PlainSocketImpl.socketConnect(Native Method)")
            }
            "java.net.SocketTimeoutException" => {
                Some("java.net.SocketInputStream.socketRead0(Native Method)")
            }
            "java.net.SocketException" => {
                Some("sun.net.www.http.HttpClient.parseHTTPHeader(HttpClient.java:866)")
            }
            _ => None,
        };
        let frames: Vec<String> = io
            .into_iter()
            .map(str::to_string)
            .chain(io.map(|_| {
                "org.springframework.web.client.RestTemplate.doExecute(RestTemplate.java:744)"
                    .to_string()
            }))
            .collect();
        let tail = if gateway {
            vec!["reactor.core.publisher.Mono.subscribe(Mono.java:4400)".to_string()]
        } else {
            let ctrl = svc
                .replace(".service.", ".controller.")
                .replace("ServiceImpl", "Controller");
            vec![
                format!("{svc}.{}({}.java:{})", hop.java_method, simple(svc), 40 + seq % 200),
                format!("{ctrl}.handle({}.java:{})", simple(&ctrl), 30 + seq % 50),
                "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:882)".into(),
                "java.lang.Thread.run(Thread.java:748)".into(),
            ]
        };
        for f in frames.into_iter().chain(tail) {
            out.push((at(hop.end_ms), format!("\tat {f}")));
        }
    }
}

fn walk<'a>(hop: &'a Hop, out: &mut Vec<&'a Hop>) {
    out.push(hop);
    for c in &hop.calls {
        if let Some(h) = &c.callee {
            walk(h, out);
        }
    }
}

fn started(life: &PodLife, app: &str) -> Vec<Line> {
    let Some(pkg) = train_ticket::package(app) else {
        return Vec::new();
    };
    let class = format!("{pkg}.{}Application", train_ticket::camel(app));
    let ms = life.created.timestamp_millis();
    let main = format!("{:>15}", "main");
    let name = train_ticket::camel(app);
    vec![
        line(
            ms,
            "INFO",
            &main,
            &class,
            &format!("Starting {name}Application on {} with PID 1", life.name),
        ),
        line(
            ms + 1,
            "INFO",
            &main,
            &class,
            &format!("Started {name}Application in 21.6 seconds (JVM running for 23.4)"),
        ),
    ]
}

impl Traffic {
    /// The log of a pod's container: `None` for pods the simulation does not run (not a
    /// Train-Ticket Java or gateway service), whose seeded log stays.
    pub fn log(&self, r: &LogRequest) -> Option<LogSource> {
        let lives: Vec<PodLife> = self
            .world()
            .pods()
            .into_iter()
            .filter(|p| p.namespace == r.namespace && p.name == r.pod)
            .collect();
        let app = lives.last()?.labels.get("app")?.clone();
        train_ticket::package(&app)?;
        let life = if r.previous {
            lives.iter().rev().nth(1)?
        } else {
            lives.last()?
        };
        let from = life.created.timestamp_millis();
        let until = life.deleted.map_or(i64::MAX, |d| d.timestamp_millis());
        let mut lines = started(life, &app);
        for req in self.requests() {
            let Some(gw) = &req.gateway else { continue };
            let mut hops = Vec::new();
            walk(gw, &mut hops);
            for h in hops {
                if h.pod == r.pod && h.start_ms >= from && h.start_ms < until {
                    hop_lines(h, req.seq, &mut lines);
                }
            }
        }
        lines.sort_by_key(|(t, _)| *t);
        Some(LogSource::lines(lines))
    }

    /// The logs as the fake kubelet's feed.
    pub fn log_feed(&self) -> crate::kube_fake::LogFeed {
        let t = self.clone();
        std::sync::Arc::new(move |r: &LogRequest| t.log(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logger_and_thread_follow_logbacks_widths() {
        assert_eq!(
            logger("preserve.service.PreserveServiceImpl").trim_end(),
            "preserve.service.PreserveServiceImpl"
        );
        assert_eq!(logger("x").len(), 40);
        let l = logger("org.springframework.boot.autoconfigure.web.reactive.error.AbstractErrorWebExceptionHandler");
        assert!(
            l.ends_with("AbstractErrorWebExceptionHandler") || l.len() == 40,
            "{l}"
        );
        assert_eq!(thread(8080, 1), "nio-8080-exec-1");
        assert_eq!(thread(14568, 3), "io-14568-exec-3");
    }
}
