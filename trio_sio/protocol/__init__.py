"""Sans-IO protocol layer: Engine.IO and Socket.IO codecs. Imports no event loop."""
