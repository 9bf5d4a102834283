"""Built-in resource types: the connection settings scripts most often keep as resources."""
from headrace.core.hookspecs import hookimpl
from headrace.core.resource_types import ResourceType

_PORT = {"type": ["integer", "string"]}  # a string allows "$var:..." references
_STR = {"type": "string"}


def _object(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props}


@hookimpl
def headrace_resource_types():
    return [
        ResourceType("postgresql", _object(["host", "dbname"], host=_STR, port=_PORT, user=_STR,
                                           password=_STR, dbname=_STR, sslmode=_STR),
                     "A PostgreSQL connection"),
        ResourceType("mysql", _object(["host", "database"], host=_STR, port=_PORT, user=_STR,
                                      password=_STR, database=_STR),
                     "A MySQL or MariaDB connection"),
        ResourceType("smtp", _object(["host"], host=_STR, port=_PORT, user=_STR, password=_STR,
                                     tls={"type": ["boolean", "string"]}),
                     "An SMTP server to send mail through"),
        ResourceType("s3", _object(["bucket"], bucket=_STR, region=_STR, endPoint=_STR,
                                   accessKey=_STR, secretKey=_STR, pathStyle={"type": ["boolean", "string"]}),
                     "An S3-compatible bucket"),
        ResourceType("http_bearer", _object(["token"], token=_STR, base_url=_STR),
                     "An HTTP API called with a bearer token"),
    ]
