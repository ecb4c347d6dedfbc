package emulator

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"zerotouch/enroll"
)

// Allocation policies (allocationPolicy of an enrollment or group), as
// package enroll declares them.
const (
	allocationHashed     = enroll.AllocationHashed
	allocationGeoLatency = enroll.AllocationGeoLatency
	allocationStatic     = enroll.AllocationStatic
	allocationCustom     = enroll.AllocationCustom
)

// codeNoHub is the errorCode of a registration that no IoT hub can take
// (DPS_HUB_ERROR_NO_HUB in the C SDK's prov_device_ll_client.c).
const codeNoHub = 400208

// policy is what allocation reads from an enrollment or a group.
type policy struct {
	status         string // provisioningStatus
	allocation     string
	iotHubs        []string
	iotHubHostName string
	reprovision    *enroll.ReprovisionPolicy
	deviceID       string // individual enrollments only
}

// allocation is the outcome of a registration.
type allocation struct {
	hub, deviceID     string
	status, substatus string
	errorCode         int
	errorMessage      string
}

// allocate decides where registration regID goes, given what its
// enrollment or group says and its previous outcome, if any (prev):
//
//   - a disabled enrollment or group: status disabled, no hub;
//   - the candidates are the linked hubs (Options.IoTHubs), restricted to
//     the enrollment's iotHubs when it lists some; none left is failed
//     with errorCode 400208;
//   - hashed (the default): the candidate at a stable hash of the
//     lower-cased registration ID; geoLatency: the first candidate (every
//     linked hub is as near as the others); static: the one hub of
//     iotHubs, else iotHubHostName, else the only candidate; custom
//     (webhooks) is not emulated: failed;
//   - a device that was assigned before keeps its hub when the
//     reprovision policy says not to update the assignment; its substatus
//     is reprovisionedToInitialAssignment when the hub is the same,
//     deviceDataMigrated or deviceDataReset (per migrateDeviceData) when
//     it moves, and initialAssignment the first time.
//
// deviceId is the individual enrollment's, else the registration ID.
func (e *Emulator) allocate(p policy, regID string, prev *registrationResult) allocation {
	if strings.EqualFold(p.status, "disabled") {
		return allocation{status: statusDisabled}
	}
	failed := func(code int, format string, args ...any) allocation {
		return allocation{status: statusFailed, errorCode: code, errorMessage: fmt.Sprintf(format, args...)}
	}
	candidates := e.hubs
	if len(p.iotHubs) > 0 {
		candidates = nil
		for _, h := range e.hubs {
			if slices.ContainsFunc(p.iotHubs, func(s string) bool { return strings.EqualFold(s, h) }) {
				candidates = append(candidates, h)
			}
		}
		if len(candidates) == 0 {
			return failed(codeNoHub, "none of the enrollment's iotHubs (%s) is linked to this service (%s)", strings.Join(p.iotHubs, ", "), strings.Join(e.hubs, ", "))
		}
	}
	var hub string
	switch pol := p.allocation; {
	case pol == "" || strings.EqualFold(pol, allocationHashed):
		hub = candidates[hashIndex(regID, len(candidates))]
	case strings.EqualFold(pol, allocationGeoLatency):
		hub = candidates[0]
	case strings.EqualFold(pol, allocationStatic):
		switch {
		case len(p.iotHubs) == 1:
			hub = candidates[0]
		case len(p.iotHubs) == 0 && p.iotHubHostName != "":
			i := slices.IndexFunc(e.hubs, func(h string) bool { return strings.EqualFold(h, p.iotHubHostName) })
			if i < 0 {
				return failed(codeNoHub, "static allocation to %s, which is not linked to this service (%s)", p.iotHubHostName, strings.Join(e.hubs, ", "))
			}
			hub = e.hubs[i]
		case len(candidates) == 1:
			hub = candidates[0]
		default:
			return failed(codeNoHub, "static allocation needs exactly one IoT hub in iotHubs; %d are candidates", len(candidates))
		}
	case strings.EqualFold(pol, allocationCustom):
		return failed(enroll.CodeBadRequest, "custom allocation (an Azure Function webhook) is not emulated")
	default:
		return failed(enroll.CodeBadRequest, "allocationPolicy %q: want hashed, geoLatency, static or custom", pol)
	}

	al := allocation{hub: hub, deviceID: p.deviceID, status: statusAssigned, substatus: substatusInitial}
	if al.deviceID == "" {
		al.deviceID = regID
	}
	if prev != nil && prev.Status == statusAssigned && prev.AssignedHub != "" {
		rp := p.reprovision
		if rp == nil {
			rp = &enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
		}
		switch {
		case !rp.UpdateHubAssignment || strings.EqualFold(prev.AssignedHub, hub):
			al.hub, al.substatus = prev.AssignedHub, substatusReprovision
		case rp.MigrateDeviceData:
			al.substatus = substatusDataMigrated
		default:
			al.substatus = substatusDataReset
		}
	}
	return al
}

// hashIndex is a stable choice in [0, n) for registration regID: the
// first 8 bytes of SHA-256 of the lower-cased ID, modulo n.
func hashIndex(regID string, n int) int {
	s := sha256.Sum256([]byte(strings.ToLower(regID)))
	return int(binary.BigEndian.Uint64(s[:8]) % uint64(n))
}
