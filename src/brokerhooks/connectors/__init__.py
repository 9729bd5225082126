"""Clients for the outside systems: SalesTrekker, Microsoft Graph, HTTP."""
