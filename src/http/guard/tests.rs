//! The guard's timeout, its writes that outlive their answers, and its Host check.
use super::*;
use tower::ServiceExt;

/// RFC 9112 §3.2: a `Host` that is no host and port is refused (each was served).
#[test]
fn host_values_are_hosts_and_ports() {
    for ok in [
        "",
        "example.com",
        "a.example:443",
        "127.0.0.1",
        "127.0.0.1:18600",
        "[::1]",
        "[::1]:8080",
        "localhost:",
    ] {
        assert!(valid_host(ok.as_bytes()), "{ok}");
    }
    for bad in [
        "a b",
        "127.0.0.1:abc",
        "user@127.0.0.1",
        "[::1",
        "127.0.0.1:99999",
        "127.0.0.1:18600/x",
        "[::1]x",
        "h\u{e9}",
    ] {
        assert!(!valid_host(bad.as_bytes()), "{bad}");
    }
}

/// A request as a client sends it (HTTP/1.1, with its `Host`).
fn request() -> Request {
    let mut req = Request::new(axum::body::Body::empty());
    req.headers_mut()
        .insert(axum::http::header::HOST, "x".parse().unwrap());
    req
}

fn guard<S>(inner: S) -> Guard<S> {
    guard_counting(inner, Writes::for_router())
}

/// `guard`, counting its writes that outlive their answers in `writes` (each test its own).
fn guard_counting<S>(inner: S, writes: &'static Writes) -> Guard<S> {
    GuardLayer {
        timeout: Duration::from_millis(50),
        max_header_bytes: 16 * 1024,
        body_limit: 1024,
        writes,
    }
    .layer(inner)
}

/// A handler that never waits on anything outside the task but always uses up its coop
/// budget (rows that keep arriving, a channel that is never empty) still gets its 503 at
/// the deadline, as under tokio's own `Timeout`.
#[tokio::test]
async fn a_handler_that_spends_its_budget_still_times_out() {
    let busy = tower::service_fn(|_: Request| async {
        loop {
            tokio::task::consume_budget().await;
        }
        #[allow(unreachable_code)]
        Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), guard(busy).oneshot(request()))
        .await
        .expect("the request timeout never fired");
    let Ok(res) = answer;
    assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
}

/// A handler that waits (a database round trip) is cut off at the deadline; one that is
/// ready at once is answered, with no timer.
#[tokio::test]
async fn a_waiting_handler_times_out_and_a_ready_one_answers() {
    let slow = tower::service_fn(|_: Request| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
    });
    let Ok(res) = guard(slow).oneshot(request()).await;
    assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let ready = tower::service_fn(|_: Request| async {
        Ok::<_, Infallible>(Response::new(axum::body::Body::from("ok")))
    });
    let Ok(res) = guard(ready).oneshot(request()).await;
    assert_eq!(res.status(), axum::http::StatusCode::OK);
}

/// A handler that takes `delay` and then sets the flag it returns.
fn slow_handler(
    delay: Duration,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone,
) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let handler = tower::service_fn(move |_: Request| {
        let flag = flag.clone();
        async move {
            tokio::time::sleep(delay).await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        }
    });
    (done, handler)
}

/// A request that may write runs to its end after its 503 (its answer was no longer
/// wanted, or the client hung up): it was cut off between its writes. A `GET` is not.
#[tokio::test]
async fn a_write_runs_to_its_end_past_the_timeout() {
    use std::sync::atomic::Ordering;
    for (method, finishes) in [
        (axum::http::Method::POST, true),
        (axum::http::Method::DELETE, true),
        (axum::http::Method::GET, false),
    ] {
        let (done, slow) = slow_handler(Duration::from_millis(200));
        let mut req = request();
        *req.method_mut() = method.clone();
        let Ok(res) = guard(slow).oneshot(req).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !done.load(Ordering::SeqCst),
            "{method}: answered before the end"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(done.load(Ordering::SeqCst), finishes, "{method}");
    }
    // A client that hangs up (the answer's future dropped) leaves a write running too.
    let (done, slow) = slow_handler(Duration::from_millis(30));
    let mut req = request();
    *req.method_mut() = axum::http::Method::POST;
    let answer = guard(slow).oneshot(req);
    let _ = tokio::time::timeout(Duration::from_millis(5), answer).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        done.load(Ordering::SeqCst),
        "the dropped write ran to its end"
    );
}

/// A write still waiting for its body when it is answered 503 has written nothing: it is
/// given up, so that its body (and connection) is let go; it held the connection open for
/// a body that never came. The shutdown waits for the writes that do run on.
#[tokio::test]
async fn a_write_waiting_for_its_body_is_given_up_and_the_shutdown_waits_for_the_rest() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    /// Sets its flag when dropped: the handler's future was given up.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let reads = tower::service_fn(move |req: Request| {
        let guard = Dropped(flag.clone());
        async move {
            let _guard = guard;
            let _ = axum::body::to_bytes(req.into_body(), 1024).await;
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        }
    });
    // A body whose bytes never come.
    let (_tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, Infallible>>(1);
    let body = axum::body::Body::from_stream(tokio_stream_of(rx));
    let mut req = request();
    *req.method_mut() = axum::http::Method::POST;
    *req.body_mut() = body;
    let (req, state) = super::super::body_read::tracked(req);
    let Ok(res) = guard(reads).oneshot(req).await;
    assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(state.waiting());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the waiting write was given up"
    );
    // A write that runs on past its answer: the shutdown's last step waits for it.
    let (done, slow) = slow_handler(Duration::from_millis(300));
    let mut req = request();
    *req.method_mut() = axum::http::Method::POST;
    let writes = Writes::for_router();
    let Ok(res) = guard_counting(slow, writes).oneshot(req).await;
    assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::timeout(Duration::from_secs(5), writes.finished())
        .await
        .expect("the writes finish");
    assert!(
        done.load(Ordering::SeqCst),
        "the shutdown waited for the write"
    );
}

/// The receiver as a stream of body chunks.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, Infallible>>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A hosted page's request that times out gets a page (a browser shows JSON as text); an
/// API request gets the JSON error body. Both are 503 with `Retry-After`.
#[tokio::test]
async fn a_browser_gets_its_timeout_as_a_page() {
    let slow = || {
        tower::service_fn(|_: Request| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        })
    };
    for (accept, html) in [
        (Some("text/html,application/xhtml+xml,*/*;q=0.8"), true),
        (Some("application/json"), false),
        (None, false),
    ] {
        let mut req = request();
        if let Some(a) = accept {
            req.headers_mut().insert(
                axum::http::header::ACCEPT,
                axum::http::HeaderValue::from_static(a),
            );
        }
        let Ok(res) = guard(slow()).oneshot(req).await;
        assert_eq!(res.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().contains_key(axum::http::header::RETRY_AFTER));
        let kind = res.headers()[axum::http::header::CONTENT_TYPE].clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        if html {
            assert_eq!(kind, "text/html; charset=utf-8");
            assert!(body.contains("<html lang=\"en\">"), "{body}");
        } else {
            assert_eq!(kind, "application/json");
            assert!(body.contains("temporarily_unavailable"), "{body}");
        }
    }
}
