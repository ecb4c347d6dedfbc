package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"zerotouch/enroll"
)

// handler carries out one operation; a non-nil *apiError is answered.
type handler func(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError

// routed is a request matched to its operation.
type routed struct {
	h  handler
	id string // the path's {id}, URL-decoded
}

func (rt routed) serve(e *Emulator, w http.ResponseWriter, r *http.Request) *apiError {
	return rt.h(e, w, r, rt.id)
}

// methods maps the methods a path takes to their handlers.
type methods map[string]handler

// route matches the escaped path case-insensitively, with or without a
// trailing slash: an unknown path is 404, a known path with another
// method 405 (with Allow).
func route(method, escapedPath string) (routed, *apiError) {
	p := strings.TrimSuffix(strings.TrimPrefix(escapedPath, "/"), "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return routed{}, badRequest(enroll.CodeBadRequest, "path segment %q is not URL-encoded properly", s)
		}
		segs[i] = u
	}
	var ms methods
	var id string
	lower := func(i int) string { return strings.ToLower(segs[i]) }
	switch {
	case len(segs) == 1 && lower(0) == "enrollments":
		ms = methods{http.MethodPost: bulk(enrollmentKind)}
	case len(segs) == 1 && lower(0) == "enrollmentgroups":
		ms = methods{http.MethodPost: bulk(groupKind)}
	case len(segs) == 2 && lower(0) == "enrollments":
		id = segs[1]
		ms = methods{http.MethodPut: putOne(enrollmentKind), http.MethodGet: getOne(enrollmentKind), http.MethodDelete: deleteOne(enrollmentKind)}
		if strings.EqualFold(id, "query") {
			ms[http.MethodPost] = query(enrollmentKind)
		}
	case len(segs) == 2 && lower(0) == "enrollmentgroups":
		id = segs[1]
		ms = methods{http.MethodPut: putOne(groupKind), http.MethodGet: getOne(groupKind), http.MethodDelete: deleteOne(groupKind)}
		if strings.EqualFold(id, "query") {
			ms[http.MethodPost] = query(groupKind)
		}
	case len(segs) == 3 && lower(0) == "enrollments" && lower(2) == "attestationmechanism":
		id = segs[1]
		ms = methods{http.MethodPost: attestationMechanism(enrollmentKind)}
	case len(segs) == 3 && lower(0) == "enrollmentgroups" && lower(2) == "attestationmechanism":
		id = segs[1]
		ms = methods{http.MethodPost: attestationMechanism(groupKind)}
	case len(segs) == 2 && lower(0) == "registrations":
		id = segs[1]
		ms = methods{http.MethodGet: getRegistrationState, http.MethodDelete: deleteRegistrationState}
	case len(segs) == 3 && lower(0) == "registrations" && lower(2) == "query":
		id = segs[1]
		ms = methods{http.MethodPost: registrationQuery}
	default:
		return routed{}, &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
			msg: fmt.Sprintf("no such path %q in the DPS service API", escapedPath)}
	}
	if id == "" && len(segs) > 1 {
		return routed{}, &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
			msg: fmt.Sprintf("path %q has an empty ID", escapedPath)}
	}
	h, ok := ms[method]
	if !ok {
		allow := make([]string, 0, len(ms))
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
			if ms[m] != nil {
				allow = append(allow, m)
			}
		}
		return routed{}, &apiError{status: http.StatusMethodNotAllowed, code: enroll.CodeMethodNotAllowed,
			msg:   fmt.Sprintf("%s is not allowed on %s; allowed: %s", method, escapedPath, strings.Join(allow, ", ")),
			allow: strings.Join(allow, ", ")}
	}
	return routed{h: h, id: id}, nil
}
