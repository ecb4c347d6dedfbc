package records

import "context"

// Renew renews the leases of s's claims now, as its renewal does every
// third of a lease, and returns how many it renewed.
func Renew(ctx context.Context, s *PGStore) (int64, error) { return s.renew(ctx) }

// SetPGDenseAt and SetPGScanWindow are SetDenseAt and SetScanWindow for
// a PGStore.
func SetPGDenseAt(s *PGStore, n int)    { s.denseAt = n }
func SetPGScanWindow(s *PGStore, n int) { s.scanWindow = n }
