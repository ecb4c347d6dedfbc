//go:build !darwin || cgo

package flasher

import (
	"strings"

	"go.bug.st/serial/enumerator"
)

// listPorts lists the serial ports with their USB details.
func listPorts() ([]PortInfo, error) {
	list, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, err
	}
	out := make([]PortInfo, 0, len(list))
	for _, d := range list {
		out = append(out, PortInfo{
			Path:         d.Name,
			USB:          d.IsUSB,
			VID:          strings.ToLower(d.VID),
			PID:          strings.ToLower(d.PID),
			SerialNumber: d.SerialNumber,
			Product:      d.Product,
		})
	}
	return out, nil
}
