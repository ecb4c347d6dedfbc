//go:build darwin && !cgo

package flasher

import "go.bug.st/serial"

// listPorts lists the serial ports by path alone (/dev/cu.* and
// /dev/tty.*): their USB details come from IOKit, which
// go.bug.st/serial/enumerator reaches through cgo only. A port rule by
// VID:PID or serial number matches nothing in such a build; name the
// port by its path.
func listPorts() ([]PortInfo, error) {
	names, err := serial.GetPortsList()
	if err != nil {
		return nil, err
	}
	out := make([]PortInfo, 0, len(names))
	for _, n := range names {
		out = append(out, PortInfo{Path: n})
	}
	return out, nil
}
