// Package access is who may use the web UI (`worker webui`) and what they
// may do, and the audit trail of what they did. Package webui puts it in
// front of the console and the job UI; the console reads the identity to
// show or hide its buttons and describes its changes for the trail.
//
// # Identity (WEBUI_AUTH)
//
//   - basic (the default when WEBUI_USERNAME is set): HTTP basic auth with
//     WEBUI_USERNAME and WEBUI_PASSWORD, compared in constant time. That
//     one user is an operator, and the audit trail names them.
//   - proxy: an authenticating reverse proxy (oauth2-proxy) signs users in
//     and passes who they are in headers: the user in
//     WEBUI_PROXY_USER_HEADER (default X-Forwarded-Email, which
//     oauth2-proxy as the reverse proxy sets and strips from clients;
//     X-Auth-Request-Email only behind an ingress that copies oauth2-proxy's
//     auth_request answer onto the request) and their groups,
//     comma-separated, in WEBUI_PROXY_GROUPS_HEADER (default
//     X-Forwarded-Groups; one header line or several). The headers are
//     believed only on a request whose TCP peer address (the connection's
//     own, never X-Forwarded-For or any other header) is in
//     WEBUI_TRUSTED_PROXIES: from anywhere else a request is 401 whatever
//     it carries, and so is a request from the proxy without the user
//     header, or with two of them. The proxy must overwrite these headers on every request it
//     passes on (oauth2-proxy does), and only it should reach the UI's
//     port (a NetworkPolicy in Kubernetes).
//   - none: no login, accepted by the configuration on a loopback
//     WEBUI_ADDR only (`make run`); a request must also come from this
//     machine. Its user is the operator "local".
//
// # Roles
//
// In proxy mode a member of a WEBUI_OPERATOR_GROUPS group is an operator;
// otherwise a member of a WEBUI_VIEWER_GROUPS group is a viewer, and when
// that list is empty any identified user is one. Anyone else is 403.
//
// Operators may do everything. Viewers see every page, the console's and
// the job UI's, but change nothing: Guard answers 403 to any request of
// theirs whose method is not GET or HEAD, whatever its route, known
// method or not, so that no route, present or future, lets a viewer change
// anything, provided it changes nothing on GET (the route tables in the
// tests of package webui and of the worker command hold every route to
// that). The console leaves its replay buttons out of a viewer's pages,
// and the job UI's page hides its retry and delete buttons from them.
//
// # Audit trail
//
// Trail.Audited records every change (a request that is not a GET or a
// HEAD) that passed the login and the role check, once its handler has
// answered, whatever the outcome: when, who and in which role, the action
// (one of the Action constants), the request's method and path, the
// Stripe events and gocraft/work jobs it named, a short detail (a replay's
// result, how many dead jobs a "retry all" found), the answer's HTTP
// status and the error, if any. Handlers describe their change through
// ChangeOf; a change no handler described (a route that does not exist)
// is recorded as "other" with its method and path. The record goes to
// Postgres (audit_log, migration 00012), read by the console at /audit,
// and to the log as one line, "web UI change" (the user, role, action,
// method, path, status, detail, error, job ids, the event count and at
// most 100 event ids; never a payload or a secret).
//
// The record is written after the change, in the same request, even if
// the client has gone (within 5 s). When it cannot be written (Postgres
// is down), the change has happened and cannot be undone: the whole
// record is logged at ERROR as "web UI change not recorded in the audit
// log", every event id included, so that the log holds what the table
// lacks, and the answer becomes a 500 saying that the change was carried
// out but not recorded. Refused requests (401, 403, cross-site) change
// nothing and are not recorded; they are logged ("web UI request
// refused", "web UI change refused").
package access
