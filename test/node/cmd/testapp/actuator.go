package main

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// actuatorPaths says where a Spring Boot app serves its actuator's
// service-registry endpoint, from the environment as Spring Boot binds it
// (docs/lifecycle-hooks.md, "spring-cloud"): exposed only when
// management.endpoints.web.exposure.include names it (or "*"); on the
// management port (management.server.port, behind
// management.server.base-path) when that differs from server.port, else
// on the app's port behind server.servlet.context-path; under
// management.endpoints.web.base-path (/actuator). mgmtPort is "" when the
// endpoint is on the app's port; path is "" when it is not exposed.
func actuatorPaths(getenv func(string) string) (mgmtPort, path string) {
	exposed := false
	for _, id := range strings.Split(getenv("MANAGEMENT_ENDPOINTS_WEB_EXPOSURE_INCLUDE"), ",") {
		id = strings.TrimSpace(id)
		exposed = exposed || id == "*" || id == "serviceregistry"
	}
	if !exposed {
		return "", ""
	}
	base := either(getenv, "MANAGEMENT_ENDPOINTS_WEB_BASEPATH", "MANAGEMENT_ENDPOINTS_WEB_BASE_PATH")
	if base == "" {
		base = "/actuator"
	}
	serverPort := getenv("SERVER_PORT")
	if serverPort == "" {
		serverPort = "8080"
	}
	if p := getenv("MANAGEMENT_SERVER_PORT"); p != "" && p != serverPort {
		return p, clean(either(getenv, "MANAGEMENT_SERVER_BASEPATH", "MANAGEMENT_SERVER_BASE_PATH") + base + "/serviceregistry")
	}
	return "", clean(base + "/serviceregistry") // the context path is the whole app's (contextPath)
}

// contextPath is server.servlet.context-path: every path of the app's
// port is served behind it.
func contextPath(getenv func(string) string) string {
	return strings.TrimRight(clean(either(getenv, "SERVER_SERVLET_CONTEXTPATH", "SERVER_SERVLET_CONTEXT_PATH")), "/")
}

func either(getenv func(string) string, names ...string) string {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func clean(p string) string {
	if p == "" {
		return ""
	}
	return "/" + strings.Trim(strings.ReplaceAll(p, "//", "/"), "/")
}

// serviceRegistryEndpoint is Spring Cloud Commons' ServiceRegistryEndpoint
// (@Endpoint(id = "serviceregistry")) as Spring Boot's web actuator serves
// it, with the registry's own ServiceRegistry behind it (register.go:
// Spring Cloud Netflix's or Spring Cloud Alibaba's):
//
//   - GET (@ReadOperation getStatus): 404 "no registration found" without
//     a registration, else 200 with serviceRegistry.getStatus's value as
//     JSON (an empty body for null);
//   - POST (@WriteOperation setStatus(String status)): the JSON body's
//     "status"; a request that is not JSON is refused (415) and a missing
//     status is a 400, both before the operation runs (Spring Boot's
//     parameter binding); 404 "no registration found" without a
//     registration; else serviceRegistry.setStatus, then 200 with no
//     body. An exception from the registry is a 500.
func serviceRegistryEndpoint(reg registration) http.HandlerFunc {
	sr, _ := reg.(statusRegistry)
	const actuatorJSON = "application/vnd.spring-boot.actuator.v3+json"
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			if sr == nil {
				http.Error(w, "no registration found", http.StatusNotFound)
				return
			}
			v, err := sr.getStatus(r.Context())
			if err != nil {
				springError(w, r, http.StatusInternalServerError, err)
				return
			}
			record("actuator", fmt.Sprintf("GET %s -> %v", r.URL.Path, v))
			if v == nil {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Header().Set("Content-Type", actuatorJSON)
			_ = json.NewEncoder(w).Encode(v)
		case http.MethodPost:
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if ct != "application/json" && ct != actuatorJSON && ct != "application/vnd.spring-boot.actuator.v2+json" {
				springError(w, r, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type '%s' is not supported", r.Header.Get("Content-Type")))
				return
			}
			var body map[string]any
			_ = json.NewDecoder(r.Body).Decode(&body)
			status, _ := body["status"].(string)
			if status == "" {
				springError(w, r, http.StatusBadRequest, fmt.Errorf("Missing parameters: status"))
				return
			}
			if sr == nil {
				http.Error(w, "no registration found", http.StatusNotFound)
				return
			}
			if err := sr.setStatus(r.Context(), status); err != nil {
				record("actuator", fmt.Sprintf("POST %s status %s failed: %v", r.URL.Path, status, err))
				springError(w, r, http.StatusInternalServerError, err)
				return
			}
			record("actuator", fmt.Sprintf("POST %s status %s", r.URL.Path, status))
			w.WriteHeader(http.StatusOK)
		default:
			springError(w, r, http.StatusMethodNotAllowed, fmt.Errorf("Request method '%s' is not supported", r.Method))
		}
	}
}

// springError is Spring Boot's error document.
func springError(w http.ResponseWriter, r *http.Request, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"timestamp": now(), "status": status, "error": http.StatusText(status),
		"message": err.Error(), "path": r.URL.Path})
}
