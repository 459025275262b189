// The local stand-ins ship no type declarations; we use a small part of each.
declare module 's3rver';
declare module 'dynalite';
