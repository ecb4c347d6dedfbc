package records

// SetDenseAt sets how many matches make a search test the records newest
// first rather than look its matches up (denseMatches), so that tests
// run both ways on a few records.
func SetDenseAt(s *Store, n int) { s.denseAt = n }
