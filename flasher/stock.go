package flasher

// Conventions of the stock board profile: a board that runs stock MCUmgr
// (os, image and fs groups; no provisioning group), as Zephyr's smp_svr
// sample does, with littlefs mounted at StockMount. The station writes its
// files there, and the virtual board (package board) reads them there.
// littlefs makes no folders on a write, so every default is a file at the
// mount point's top.
const (
	// StockMount is where a stock Zephyr board mounts its littlefs.
	StockMount = "/lfs1"
	// StockConfigPath is where the station writes the configuration on a
	// stock board unless the line names another file.
	StockConfigPath = StockMount + "/zerotouch.conf"
	// StockKeyPath is where the station writes the device key in mode
	// x509-station-key (PEM, PKCS #8) unless the line names another file.
	StockKeyPath = StockMount + "/zerotouch.key"
	// StockRegistrationPath is the file a stock board's firmware writes
	// its DPS registration's outcome to at boot, as the JSON of a
	// Registration; the station reads it for the end-of-line check.
	StockRegistrationPath = StockMount + "/zerotouch.reg"
)
