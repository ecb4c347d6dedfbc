package records

// SetDenseAt sets how many matches make a search test the records newest
// first rather than look its matches up (denseMatches), so that tests
// run both ways on a few records.
func SetDenseAt(s *Store, n int) { s.denseAt = n }

// SetScanWindow sets how many of the newest records a dense search
// tests (scanWindow).
func SetScanWindow(s *Store, n int) { s.scanWindow = n }
