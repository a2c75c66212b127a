"""Numbers from the AMQP 0-9-1 specification that the codec and the engine share."""

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
#: Protocol headers accepted besides 0-9-1, as RabbitMQ 3.x accepts them
#: (rabbit_reader:handshake/2), each with the (major, minor) version that connection.start
#: then announces. Every one of them speaks 0-9-1 methods afterwards: 0-9-1 only clarified
#: 0-9, and the methods 0-8 clients use are encoded the same way (0-8's ``access`` class is
#: not served). Older clients such as Twisted's txAMQP and py-amqplib send these.
OLDER_PROTOCOL_HEADERS = {
    b"AMQP\x01\x01\x00\x09": (0, 9),  # 0-9
    b"AMQP\x01\x01\x08\x00": (8, 0),  # what most 0-8 clients send (0-8 calls itself 8-0)
    b"AMQP\x01\x01\x09\x01": (8, 0),  # the 0-8 header as printed in the 0-8 spec
}

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_HEADER_SIZE = 7
FRAME_MIN_SIZE = 4096
#: Bytes a frame adds around its payload: the 7-byte header and the frame-end octet.
FRAME_OVERHEAD = 8

# Class ids
CONNECTION = 10
CHANNEL = 20
EXCHANGE = 40
QUEUE = 50
BASIC = 60
CONFIRM = 85
TX = 90

# Reply codes
REPLY_SUCCESS = 200
CONTENT_TOO_LARGE = 311
NO_ROUTE = 312
NO_CONSUMERS = 313
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

REPLY_NAMES = {
    200: "OK",
    311: "CONTENT_TOO_LARGE",
    312: "NO_ROUTE",
    313: "NO_CONSUMERS",
    320: "CONNECTION_FORCED",
    402: "INVALID_PATH",
    403: "ACCESS_REFUSED",
    404: "NOT_FOUND",
    405: "RESOURCE_LOCKED",
    406: "PRECONDITION_FAILED",
    501: "FRAME_ERROR",
    502: "SYNTAX_ERROR",
    503: "COMMAND_INVALID",
    504: "CHANNEL_ERROR",
    505: "UNEXPECTED_FRAME",
    506: "RESOURCE_ERROR",
    530: "NOT_ALLOWED",
    540: "NOT_IMPLEMENTED",
    541: "INTERNAL_ERROR",
}


# Basic content-header property flags (spec 0-9-1, class basic), most significant bit first.
PROPERTY_CONTENT_TYPE = 1 << 15
PROPERTY_CONTENT_ENCODING = 1 << 14
PROPERTY_HEADERS = 1 << 13
PROPERTY_DELIVERY_MODE = 1 << 12
PROPERTY_PRIORITY = 1 << 11
PROPERTY_CORRELATION_ID = 1 << 10
PROPERTY_REPLY_TO = 1 << 9
PROPERTY_EXPIRATION = 1 << 8
PROPERTY_MESSAGE_ID = 1 << 7
