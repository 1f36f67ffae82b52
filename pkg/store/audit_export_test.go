package store

// ListAuditQuery is ListAudit's statement and arguments, for the test that
// EXPLAINs it.
func ListAuditQuery(f AuditFilter, before int64, limit int) (string, []any) {
	return listAuditQuery(f, before, limit)
}
