//! The distribution spec's error codes, each with its HTTP status in one table.
//!
//! The server builds the `{"errors":[{"code","message","detail"}]}` body from these; the
//! status belongs to the code, so no handler picks one by hand.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    Toomanyrequests,
    /// Distribution's code for a bad `n` on list endpoints.
    PaginationNumberInvalid,
    /// A bad query parameter or body field on the `/api/v1` endpoints.
    ParameterInvalid,
    /// An `/api/v1` object (a user, token or grant) that does not exist.
    NotFound,
    /// An `/api/v1` object that already exists.
    Conflict,
    /// Distribution's code for an unexpected server fault; the body says no more than that.
    Unknown,
}

impl ErrorCode {
    /// `(HTTP status, default message)` for each code.
    fn row(self) -> (u16, &'static str) {
        use ErrorCode::*;
        match self {
            BlobUnknown => (404, "blob unknown to registry"),
            BlobUploadInvalid => (400, "blob upload invalid"),
            BlobUploadUnknown => (404, "blob upload unknown to registry"),
            DigestInvalid => (400, "provided digest did not match uploaded content"),
            ManifestBlobUnknown => (
                404,
                "manifest references a manifest or blob unknown to registry",
            ),
            ManifestInvalid => (400, "manifest invalid"),
            ManifestUnknown => (404, "manifest unknown to registry"),
            NameInvalid => (400, "invalid repository name"),
            NameUnknown => (404, "repository name not known to registry"),
            SizeInvalid => (400, "provided length did not match content length"),
            TagInvalid => (400, "manifest tag did not match URI"),
            Unauthorized => (401, "authentication required"),
            Denied => (403, "requested access to the resource is denied"),
            Unsupported => (405, "the operation is unsupported"),
            Toomanyrequests => (429, "too many requests"),
            PaginationNumberInvalid => (400, "invalid number of results requested"),
            ParameterInvalid => (400, "invalid request parameter"),
            NotFound => (404, "not found"),
            Conflict => (409, "already exists"),
            Unknown => (500, "unknown error"),
        }
    }

    pub fn status(self) -> u16 {
        self.row().0
    }

    pub fn message(self) -> &'static str {
        self.row().1
    }

    /// The code as it appears on the wire, e.g. `BLOB_UNKNOWN`.
    pub fn as_str(self) -> String {
        // Serializing a unit variant to a string cannot fail.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_the_spec_spells_them() {
        assert_eq!(
            ErrorCode::ManifestBlobUnknown.as_str(),
            "MANIFEST_BLOB_UNKNOWN"
        );
        assert_eq!(ErrorCode::Toomanyrequests.as_str(), "TOOMANYREQUESTS");
        assert_eq!(ErrorCode::BlobUploadInvalid.as_str(), "BLOB_UPLOAD_INVALID");
    }

    #[test]
    fn statuses_match_the_spec_table() {
        assert_eq!(ErrorCode::BlobUnknown.status(), 404);
        assert_eq!(ErrorCode::DigestInvalid.status(), 400);
        assert_eq!(ErrorCode::Unauthorized.status(), 401);
        assert_eq!(ErrorCode::Denied.status(), 403);
        assert_eq!(ErrorCode::Toomanyrequests.status(), 429);
    }
}
